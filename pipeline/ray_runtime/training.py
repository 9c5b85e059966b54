"""Ray Train: the TorchTrainer that runs a per-worker training function, and a worker's view of Ray.

- ``train`` runs a per-worker training function on ``ray.num_workers`` DDP workers (``make_trainer``) and copies
  the final checkpoint out; inside that function ``TRAIN_WORKER`` (``worker_rank``, ``worker_device``,
  ``restored_checkpoint``, ``report``) is its view of Ray.

The train stage imports this module and not ``tuning`` (Ray Tune, the sweep's), so editing the sweep's Tune
code does not retrain.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from gans.atomic import atomic_file
from gans.errors import UserError
from pipeline.params import RayConfig
from pipeline.ray_runtime.cluster import RUN_NAME, clear_run, concrete_workers, ray_session, storage_uri


def quiet_report_logs() -> None:
    """In a Train worker: drop Ray Train's INFO line per ``ray.train.report`` ("Reporting training result …", the
    whole report), logged under a logger named by its module's file path; the stages print their own progress."""
    with contextlib.suppress(ImportError):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def worker_rank() -> int:
    """This Ray Train worker's rank in the DDP group."""
    return ray.train.get_context().get_world_rank()


def worker_device() -> torch.device:
    """The device Ray Train assigned to this worker (its GPU, or the CPU)."""
    return ray.train.torch.get_device()


@contextlib.contextmanager
def checkpoint_directory(restored: Optional[Any]) -> Iterator[Optional[Path]]:
    """The local directory of ``restored`` (a Ray Train or Tune checkpoint, or None) for the duration of the block.

    Remote checkpoints are downloaded first."""
    if restored is None:
        yield None
        return
    with restored.as_directory() as directory:
        yield Path(directory)


def restored_checkpoint() -> contextlib.AbstractContextManager[Optional[Path]]:
    """The directory of the checkpoint this worker resumes from, or None for a fresh start.

    Ray hands one over when it restores a run kept at the same (storage, name), or restarts a failed
    worker group (``ray.max_failures``).
    """
    return checkpoint_directory(ray.train.get_checkpoint())


def report_payload(metrics: dict[str, float], step: int) -> dict[str, Any]:
    """What a report hands to Ray: the metrics, the step, and the node it came from (``node_id``), so a sweep's
    results show where its trials ran."""
    return {**metrics, "step": step, "node_id": ray.get_runtime_context().get_node_id()}


def report(metrics: dict[str, float], step: int, ckpt_dir: Optional[Path]) -> None:
    """``gans.loop.fit``'s ``report`` callback: metrics, and the snapshot directory as a Ray checkpoint."""
    checkpoint = None if ckpt_dir is None else Checkpoint.from_directory(str(ckpt_dir))
    ray.train.report(report_payload(metrics, step), checkpoint=checkpoint)


@dataclass(frozen=True)
class WorkerView:
    """How a training process sees Ray: its rank, its device, the checkpoint it resumes from, where it reports.

    ``TRAIN_WORKER`` is a Ray Train worker's view; a sweep trial that trains in its own process has Tune's
    (``trial.TUNE_TRIAL``)."""

    rank: Callable[[], int]
    device: Callable[[], torch.device]
    restored_checkpoint: Callable[[], contextlib.AbstractContextManager[Optional[Path]]]
    report: Callable[[dict[str, float], int, Optional[Path]], None]


TRAIN_WORKER = WorkerView(worker_rank, worker_device, restored_checkpoint, report)


def worker_threads(ray_cfg: RayConfig) -> int:
    """torch's threads in one worker: the CPUs the worker reserved (at least 1)."""
    return max(1, int(ray_cfg.cpus_per_worker))


def torch_backend(ray_cfg: RayConfig) -> str:
    """The torch.distributed backend of the workers: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if ray_cfg.use_gpu else "gloo"


def make_trainer(
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    name: str = RUN_NAME,
    callbacks: Optional[list] = None,
) -> TorchTrainer:
    """A TorchTrainer running ``train_fn(loop_config)`` on ``ray.num_workers`` DDP workers.

    ``loop_config`` gains ``threads``: the CPUs each worker reserved, for ``torch.set_num_threads``.
    ``callbacks`` are the run's (inside a Tune trial, ``trial.trial_trainer`` passes the one that makes
    rank 0's reports the trial's results). The backend is set explicitly (``torch_backend``), not left to
    Ray's default.
    """
    ray_cfg = concrete_workers(ray_cfg) if ray.is_initialized() else ray_cfg
    return TorchTrainer(
        train_fn,
        train_loop_config={**loop_config, "threads": worker_threads(ray_cfg)},
        torch_config=TorchConfig(backend=torch_backend(ray_cfg)),
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
            callbacks=callbacks,
        ),
    )


def copy_result_file(result: ray.train.Result, filename: str, target: Path) -> Path:
    """Copy ``filename`` of a finished run's last checkpoint to ``target`` (downloaded first when remote)."""
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
        ray_cfg = concrete_workers(ray_cfg)
        print(
            f"[train] {ray_cfg.num_workers} worker{'s' if ray_cfg.num_workers > 1 else ''} × "
            f"{'1 GPU' if ray_cfg.use_gpu else f'{ray_cfg.cpus_per_worker:g} CPUs'}",
            flush=True,
        )
        result = fit_run(make_trainer(train_fn, loop_config, ray_cfg))
        copy_result_file(result, checkpoint_file, target)
    return dict(result.metrics or {})


def fit_run(trainer: TorchTrainer) -> ray.train.Result:
    """``trainer.fit()``; a ``UserError`` a worker raised is raised as it is, one sentence without Ray's traceback."""
    try:
        return trainer.fit()
    except ray.train.WorkerGroupError as error:
        user_error = user_error_of(error)
        if user_error is None:
            raise
        raise user_error from None


def user_error_of(error: ray.train.WorkerGroupError) -> Optional[UserError]:
    """The ``UserError`` a worker raised (bad input, e.g. a refused resume), so the stage prints one sentence."""
    for failure in error.worker_failures.values():
        cause = getattr(failure, "cause", failure)  # Ray wraps a worker's exception in a RayTaskError
        if isinstance(cause, UserError):
            return cause.with_traceback(None)
    return None
