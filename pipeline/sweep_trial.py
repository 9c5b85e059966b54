"""One sweep trial as Tune runs it: the run its point stands for (``sweep_space.trial_config``), trained.

A trial of one worker trains in its own process; a trial of several drives a Train run of
``train_func_per_worker``. Kept apart from the sweep stage so that a trial's process
imports only this, not the stage's plots. Trials of one worker run one after another in the same process
(Tune's ``reuse_actors``), so only the first pays these imports; a trial of several pays them in a new actor
(``tuning.make_tuner`` says why). Import times: docs/benchmarks.md, "Tune's overhead per trial".
"""

from __future__ import annotations

from typing import Any

from gans.config import GANConfig
from gans.loop import TrainingStopped, stop_message
from pipeline.params import RayConfig, SweepConfig
from pipeline.ray_runtime import trial
from pipeline.ray_runtime.training import worker_threads
from pipeline.sweep_space import trial_config
from pipeline.worker import fit_with_ray, train_func_per_worker


def run_trial(
    config: dict[str, Any], *, base: GANConfig, sweep: SweepConfig, ray_cfg: RayConfig, prepared: str, reference: str
) -> None:
    """One Tune trial: ``trial_config(config["point"])`` trained in this process (one worker) or by a Train run
    (several); a run stopped by ``train.stop_on`` fails the trial."""
    cfg = trial_config(base, sweep, config["point"])
    loop_config = {"cfg": cfg, "prepared": prepared, "reference": reference, "live_dir": None}
    if trial.trains_in_trial(ray_cfg):
        final = fit_with_ray({**loop_config, "threads": worker_threads(ray_cfg)}, trial.TUNE_TRIAL)
        stopped = ",".join(final["stopped_by"])
        message = stop_message({"stopped_by": stopped, "step": final["history"][-1]["step"]}) if stopped else None
    else:
        message = stop_message(trial.fit_trial(train_func_per_worker, loop_config, ray_cfg))
    if message:  # a failure mode in train.stop_on (divergence by default) ended the run: the trial fails
        raise TrainingStopped(message)
