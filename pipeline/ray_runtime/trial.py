"""Inside a Tune trial: how a trial sees Ray, or the Train run it drives.

A trial of one worker trains in the trial's own process: ``TUNE_TRIAL`` is its view of Ray (rank 0, Tune's
checkpoints, Tune's retries). A trial of several DDP workers drives a Train run of its own (``fit_trial``),
named after the trial, whose rank 0 reports become the trial's results. ``trains_in_trial`` says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import ray
import ray.train
import ray.tune
import torch
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from pipeline.params import RayConfig
from pipeline.ray_runtime.training import WorkerView, checkpoint_directory, fit_run, make_trainer, report_payload


def trial_name() -> str:
    """A stable name for the Train run of the current Tune trial (restoring a sweep needs it unchanged)."""
    return f"trial-{ray.tune.get_context().get_trial_id()}"


def trial_device() -> torch.device:
    """The device of a trial that trains in its own process: the GPU Ray assigned it, or the CPU."""
    return torch.device("cuda" if ray.get_gpu_ids() else "cpu")


def trial_report(metrics: dict[str, float], step: int, ckpt_dir: Optional[Path]) -> None:
    """``gans.loop.fit``'s ``report`` callback in a trial's own process: the trial's result and Tune checkpoint."""
    checkpoint = None if ckpt_dir is None else ray.tune.Checkpoint.from_directory(str(ckpt_dir))
    ray.tune.report(report_payload(metrics, step), checkpoint=checkpoint)


def _rank_zero() -> int:
    return 0


def _trial_checkpoint():
    return checkpoint_directory(ray.tune.get_checkpoint())


TUNE_TRIAL = WorkerView(_rank_zero, trial_device, _trial_checkpoint, trial_report)
"""The view of Ray of a trial that trains in its own process: rank 0, Tune's checkpoints and retries."""


def trial_trainer(
    train_fn: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], ray_cfg: RayConfig
) -> TorchTrainer:
    """Inside a Tune trial: the TorchTrainer of this trial's Train run, whose rank 0 reports become the trial's results.

    The run is named after the trial, so a restored sweep's unfinished trial resumes its own checkpoints
    and a worker failure retries from the latest one (``ray.max_failures``).
    """
    return make_trainer(train_fn, loop_config, ray_cfg, name=trial_name(), callbacks=[TuneReportCallback()])


def fit_trial(
    train_fn: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], ray_cfg: RayConfig
) -> dict[str, Any]:
    """Inside a Tune trial: run this trial's Train run (``trial_trainer``); returns its last metrics."""
    return dict(fit_run(trial_trainer(train_fn, loop_config, ray_cfg)).metrics or {})


def trains_in_trial(ray_cfg: RayConfig) -> bool:
    """Whether a trial of ``ray_cfg`` trains in its own process (one worker) or drives a Train run (several).

    One worker needs no Train run: no controller, worker group or placement group to start, so a trial costs
    a few processes fewer; Tune then keeps its checkpoints and retries it (``ray.max_failures``)."""
    return ray_cfg.num_workers == 1
