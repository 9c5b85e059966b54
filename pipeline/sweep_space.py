"""The sweep's search space in plain Python: a point's keys, the run a point stands for, a trial's outcome.

Imports no Ray (``ray_runtime.tuning`` builds Tune's space from these keys and hands back ``TrialOutcome``
records), so neither does the sweep's report (``pipeline.sweep_report``), nor a disabled sweep stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from gans.config import GANConfig
from gans.losses import recommended_betas
from pipeline.params import SweepConfig

LOSS, RATIO, MODEL, SEED = "loss", "ttur_ratio", "model", "seed"
"""The keys of a search-space point (a trial's ``config["point"]``)."""


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


@dataclass
class TrialOutcome:
    """What a sweep needs to know of one finished trial, in plain Python."""

    trial_id: str
    point: dict[str, Any]
    """The trial's values of the searched keys (its config's ``point``)."""
    reports: list[dict[str, float]] = field(default_factory=list)
    """Every result it reported, in order (``step``, the metric, ``time_total_s``, ``timestamp``, …)."""
    error: Optional[str] = None
    """The first line of the exception that ended it, None when it ended normally (completed or stopped)."""
    wall_s: Optional[float] = None
    """Seconds from Tune starting the trial to Tune seeing it end (None for a trial ended before a resume)."""
