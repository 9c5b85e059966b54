"""Ray Train glue: the per-worker training function and the TorchTrainer that runs it.

Everything about Ray lives here; the worker function only adapts ``gans.loop.fit``'s callbacks:
``log`` → DVCLive (rank 0) and a progress line, ``report`` → ``ray.train.report`` with the snapshot as a
Ray checkpoint. A restarted worker group resumes from Ray's latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from gans import checkpoint
from gans.config import GANConfig
from gans.data import PreparedDataset
from gans.loop import fit

RUN_NAME = "train"


class LiveLog:
    """The ``log`` callback of rank 0: DVCLive metrics plus one progress line per log step."""

    def __init__(self, live_dir: str, total_steps: int, resume: bool) -> None:
        from dvclive import Live

        self.live = Live(dir=live_dir, resume=resume, save_dvc_exp=False, dvcyaml=None)
        self.total_steps = total_steps
        self.started = time.perf_counter()
        self.first_step: Optional[int] = None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.step = step
        self.live.next_step()
        if self.first_step is None:
            self.first_step, self.started = step, time.perf_counter()
        rate = (step - self.first_step) / max(time.perf_counter() - self.started, 1e-9)
        print(
            f"[train] step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%) "
            f"d_loss={metrics['d_loss']:.3f} g_loss={metrics['g_loss']:.3f} "
            f"acc_real={metrics['d_acc_real']:.2f} acc_fake={metrics['d_acc_fake']:.2f} {rate:.1f} step/s",
            flush=True,
        )

    def close(self) -> None:
        self.live.end()


def _report(metrics: dict[str, float], step: int, ckpt_dir: Optional[Path]) -> None:
    payload = {**metrics, "step": step}
    if ckpt_dir is None:
        ray.train.report(payload)
    else:
        ray.train.report(payload, checkpoint=Checkpoint.from_directory(str(ckpt_dir)))


def train_func_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: DDP is already set up by TorchTrainer."""
    # Match torch's thread pool to the CPUs Ray reserved: oversubscribed cores slow DDP on CPU several-fold.
    torch.set_num_threads(config["threads"])
    cfg = GANConfig.from_dict(config["params"])
    dataset = PreparedDataset(config["prepared"])
    device = ray.train.torch.get_device()
    rank = ray.train.get_context().get_world_rank()

    resume_state = None
    ray_checkpoint = ray.train.get_checkpoint()  # set when a failed worker group restarts
    if ray_checkpoint is not None:
        with ray_checkpoint.as_directory() as directory:
            resume_state = checkpoint.load(directory)
    elif config.get("resume_from"):
        resume_state = checkpoint.load(config["resume_from"])

    log = None
    if rank == 0 and config.get("live_dir"):
        log = LiveLog(config["live_dir"], cfg.train.steps, resume=resume_state is not None)
    try:
        with tempfile.TemporaryDirectory(prefix="gan-snapshots-") as work_dir:
            fit(cfg, dataset, work_dir=work_dir, device=device, resume=resume_state, log=log, report=_report)
    finally:
        if log is not None:
            log.close()


def make_trainer(
    params: dict[str, Any],
    *,
    prepared: str,
    live_dir: Optional[str],
    storage_path: str,
    num_workers: int,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    placement_strategy: str = "PACK",
    max_failures: int = 0,
    resume_from: Optional[str] = None,
    name: str = RUN_NAME,
) -> TorchTrainer:
    """A TorchTrainer for ``params`` (a params.yaml mapping); paths must be absolute or URIs."""
    return TorchTrainer(
        train_func_per_worker,
        train_loop_config={
            "params": params,
            "prepared": prepared,
            "live_dir": live_dir,
            "resume_from": resume_from,
            "threads": max(1, int(cpus_per_worker)),
        },
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
            placement_strategy=placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Fail fast (instead of retrying forever) when the cluster cannot host the workers.
            failure_config=FailureConfig(max_failures=max_failures, controller_failure_limit=0),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )


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
    import logging

    logging.getLogger(_NOISY_LOGGER).setLevel(logging.ERROR)


def init_ray(address: Optional[str], num_cpus: Optional[int] = None) -> None:
    """Join ``address`` or start a quiet, private local Ray instance."""
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


def latest_checkpoint_file(result) -> Path:
    """Local path of checkpoint.pt in a Ray Train result (downloaded when storage is remote)."""
    if result.error is not None:
        raise RuntimeError(f"Training failed: {result.error}")
    if result.checkpoint is None:
        raise RuntimeError("Training finished without reporting a checkpoint.")
    target = Path(tempfile.mkdtemp(prefix="gan-result-"))
    return Path(result.checkpoint.to_directory(str(target))) / checkpoint.FILENAME
