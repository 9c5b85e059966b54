"""One sweep trial as Tune runs it: its config (a point of the search space applied) and its training.

A trial of one worker trains in its own process; a trial of several drives a Train run of
``train_func_per_worker``. Kept apart from the sweep stage so that a trial's process
imports only this, not the stage's plots. Every trial pays its imports in a new actor (Tune's
``reuse_actors`` stays off: an ASHA-stopped trial would keep its CPUs). Import times: docs/benchmarks.md,
"Tune's overhead per trial".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gans.config import GANConfig
from gans.loop import TrainingStopped, stop_message
from gans.losses import recommended_betas
from pipeline.params import RayConfig, SweepConfig
from pipeline.ray_runtime import trial
from pipeline.ray_runtime.training import worker_threads
from pipeline.ray_runtime.tuning import LOSS, MODEL, RATIO, SEED
from pipeline.worker import fit_with_ray, train_func_per_worker


def trial_config(base: GANConfig, sweep: SweepConfig, point: dict[str, Any]) -> GANConfig:
    """params.yaml's run with one point of the search space applied, shortened to the sweep's budget.

    lr_d = ratio × lr_g; betas are ``sweep.betas`` or the loss's known-good ones (hinge and wgan-gp:
    (0, 0.9)) or params.yaml's; n_critic is ``sweep.n_critic`` or the loss's default (wgan-gp: 5); the seed is the
    point's (``sweep.seeds``) or ``train.seed``.
    """
    lr_g = sweep.lr_g or base.optim.lr_g
    betas = sweep.betas or recommended_betas(point[LOSS])
    optim = dataclasses.replace(
        base.optim,
        lr_g=lr_g,
        lr_d=lr_g * float(point[RATIO]),
        betas_g=betas or base.optim.betas_g,
        betas_d=betas or base.optim.betas_d,
    )
    train = dataclasses.replace(
        base.train,
        seed=int(point.get(SEED, base.train.seed)),
        steps=sweep.steps,
        fid_every=0,
        fid_steps=sweep.report_steps(),
        snapshot_every=sweep.steps,
        n_critic=sweep.n_critic,
        resume=False,
    )
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, name=point.get(MODEL, base.model.name)),
        loss=dataclasses.replace(base.loss, name=point[LOSS]),
        optim=optim,
        train=train,
    )


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
