"""Everything that knows Ray: starting or joining a cluster, training on it, where Ray keeps a run, the Pool.

The stages call these functions and never import Ray themselves:

- ``ray_session`` starts a quiet private Ray instance (or joins ``ray.address``) and shuts it down after;
- ``train`` runs a per-worker training function on a Ray Train ``TorchTrainer`` (DDP) and copies the final
  checkpoint out; inside that function ``worker_rank``, ``worker_device``, ``restored_checkpoint`` and
  ``report`` are its view of Ray;
- ``clear_run`` removes a run's Ray state on any storage (local path, ``file://``, ``s3://``, ...);
- ``cluster_pool`` spreads data preparation over the cluster with Ray's multiprocessing Pool.

Ray persists each run under ``ray.storage_path/<name>/`` (its ``checkpoint_*`` directories and the
checkpoint manager's state); only this module knows that layout.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pyarrow.fs
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from gans.atomic import atomic_file
from pipeline.params import RayConfig

RUN_NAME = "train"

# Ray Train V2 polls workers every 2 s by default, so each ray.train.report would block up to 2 s;
# print patching shows every worker line twice; the preemption watcher only matters on spot clusters.
_RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# Without the dashboard this Ray Train helper warns every few seconds that the State API is missing.
_NOISY_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def _quiet_worker_logs() -> None:
    logging.getLogger(_NOISY_LOGGER).setLevel(logging.ERROR)


def init_ray(address: Optional[str], num_cpus: Optional[int] = None) -> None:
    """Join ``address`` or start a quiet, private local Ray instance (no-op when Ray is already up)."""
    if ray.is_initialized():
        return
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    if address:
        ray.init(address=address)
        return
    # A private local instance needs no auth token (and must not create ~/.ray/auth_token).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # "local" starts a new instance even when another Ray cluster runs on this machine.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"worker_process_setup_hook": _quiet_worker_logs},
    )


@contextlib.contextmanager
def ray_session(ray_cfg: RayConfig) -> Iterator[None]:
    """Ray for one stage: the cluster at ``ray.address``, or a local instance big enough for the workers."""
    num_cpus = max(os.cpu_count() or 1, math.ceil(ray_cfg.num_workers * ray_cfg.cpus_per_worker))
    init_ray(ray_cfg.address, num_cpus=None if ray_cfg.address else num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


def storage_uri(storage_path: str) -> str:
    """``ray.storage_path`` as Ray needs it: a URI unchanged, a local path made absolute."""
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def clear_run(storage_path: str, name: str = RUN_NAME) -> None:
    """Delete the run ``name`` under ``storage_path`` (any pyarrow file system), so the next run starts fresh.

    Ray Train restores a run it finds at the same (storage, name); a fresh run must not inherit one.
    """
    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage_uri(storage_path))
    run_dir = f"{root.rstrip('/')}/{name}"
    if filesystem.get_file_info(run_dir).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_dir(run_dir)


def worker_rank() -> int:
    """This Ray Train worker's rank in the DDP group."""
    return ray.train.get_context().get_world_rank()


def worker_device() -> torch.device:
    """The device Ray Train assigned to this worker (its GPU, or the CPU)."""
    return ray.train.torch.get_device()


@contextlib.contextmanager
def restored_checkpoint() -> Iterator[Optional[Path]]:
    """The directory of the checkpoint this worker resumes from, or None for a fresh start.

    Ray hands one over when it restores a run kept at the same (storage, name), or restarts a failed
    worker group (``ray.max_failures``); remote checkpoints are downloaded for the duration of the block.
    """
    restored = ray.train.get_checkpoint()
    if restored is None:
        yield None
        return
    with restored.as_directory() as directory:
        yield Path(directory)


def report(metrics: dict[str, float], step: int, ckpt_dir: Optional[Path]) -> None:
    """``gans.loop.fit``'s ``report`` callback: metrics, and the snapshot directory as a Ray checkpoint."""
    payload = {**metrics, "step": step}
    if ckpt_dir is None:
        ray.train.report(payload)
    else:
        ray.train.report(payload, checkpoint=Checkpoint.from_directory(str(ckpt_dir)))


def make_trainer(
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    name: str = RUN_NAME,
) -> TorchTrainer:
    """A TorchTrainer running ``train_fn(loop_config)`` on ``ray.num_workers`` DDP workers.

    ``loop_config`` gains ``threads``: the CPUs each worker reserved, for ``torch.set_num_threads``.
    """
    return TorchTrainer(
        train_fn,
        train_loop_config={**loop_config, "threads": max(1, int(ray_cfg.cpus_per_worker))},
        scaling_config=ScalingConfig(
            num_workers=ray_cfg.num_workers,
            use_gpu=ray_cfg.use_gpu,
            resources_per_worker={"CPU": ray_cfg.cpus_per_worker, **({"GPU": 1} if ray_cfg.use_gpu else {})},
            placement_strategy=ray_cfg.placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_uri(ray_cfg.storage_path),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Fail fast (instead of retrying forever) when the cluster cannot host the workers.
            failure_config=FailureConfig(max_failures=ray_cfg.max_failures, controller_failure_limit=0),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )


def copy_result_file(result: ray.train.Result, filename: str, target: Path) -> Path:
    """Copy ``filename`` of a finished run's last checkpoint to ``target`` (downloaded first when remote)."""
    if result.error is not None:
        raise RuntimeError(f"Training failed: {result.error}")
    if result.checkpoint is None:
        raise RuntimeError("Training finished without reporting a checkpoint.")
    with tempfile.TemporaryDirectory(prefix="gan-result-") as download:
        source = Path(result.checkpoint.to_directory(download)) / filename
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


def train(
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    resume: bool,
    checkpoint_file: str,
    target: Path,
) -> dict[str, Any]:
    """Run ``train_fn`` with Ray Train, copy ``checkpoint_file`` of the last checkpoint to ``target``.

    With ``resume`` the run Ray keeps under ``ray.storage_path`` continues; otherwise it is deleted
    first, wherever it is stored, so a fresh run never inherits an old one. Returns the last metrics.
    """
    with ray_session(ray_cfg):
        if not resume:
            clear_run(ray_cfg.storage_path)
        result = make_trainer(train_fn, loop_config, ray_cfg).fit()
        copy_result_file(result, checkpoint_file, target)
    return dict(result.metrics or {})


@contextlib.contextmanager
def cluster_pool(address: Optional[str]) -> Iterator[Optional[Any]]:
    """Ray's multiprocessing Pool over the cluster at ``address`` (one process per CPU), or None locally."""
    if not address:
        yield None
        return
    from ray.util.multiprocessing import Pool

    init_ray(address)
    pool = Pool(processes=max(1, int(ray.cluster_resources().get("CPU", 1))))
    try:
        yield pool
    finally:
        pool.terminate()
        ray.shutdown()
