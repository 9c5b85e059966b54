"""A run's training state, and the one place that knows the keys of its checkpoint dict.

``TrainState`` holds what a run carries from step to step (models, optimizers, scalers, the ADA
probability, history, best weights, diagnoses); ``to_checkpoint`` turns it into the dict that
``gans.checkpoint.save`` writes and ``fit`` returns, and ``load_checkpoint`` continues a run from such a
dict, refusing one whose run differs (``resume_conflicts``). The keys are ``config, step, world_size, G, D,
G_ema, G_init, opt_g, opt_d, scalers, rng, fixed_z, history, best, augment_p, diagnosis, stopped_by,
precision``; ``gans.checkpoint``, the pipeline stages and old checkpoints rely on them as they are.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Optional

import torch

from gans import precision as precision_choice
from gans.augment import Augment
from gans.config import ConfigError, GANConfig
from gans.diagnosis import Diagnosis
from gans.ema import make_ema
from gans.models import build_models
from gans.step import Precision, make_optimizers

ROLLBACK_KEYS = ("history", "diagnosis", "stopped_by")
"""What a run stopped by divergence reports from its last step; everything else comes from its last good snapshot."""


def memory_format_of(decision: precision_choice.Decision) -> torch.memory_format:
    """The layout of the models and of the image batches fed to them (channels-last when the decision says so)."""
    return torch.channels_last if decision.channels_last else torch.contiguous_format


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s state dict, which later steps do not change."""
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def resume_conflicts(saved: GANConfig, saved_world_size: int, cfg: GANConfig, world_size: int) -> list[str]:
    """What differs between a checkpoint's run and the run that would continue it, as "key: old → new".

    A run is defined by its data, model, loss and optimizer, and also by everything that decides its data
    order and noise streams: the seed, the batch size, the D updates per G update and the world size.
    ``train.steps`` may grow; logging and snapshot cadence may change.
    """
    conflicts = [
        f"{section} section"
        for section in ("data", "model", "loss", "optim", "augment")
        if getattr(saved, section) != getattr(cfg, section)
    ]
    for key, old, new in (
        ("train.seed", saved.train.seed, cfg.train.seed),
        ("train.batch_size", saved.train.batch_size, cfg.train.batch_size),
        ("train.n_critic", saved.n_critic, cfg.n_critic),
        ("world size (workers)", saved_world_size, world_size),
    ):
        if old != new:
            conflicts.append(f"{key} {old} → {new}")
    return conflicts


@dataclasses.dataclass
class TrainState:
    """Everything a run carries from one step to the next, on this rank."""

    cfg: GANConfig
    world_size: int
    decision: precision_choice.Decision
    """The run's precision and layout (kept so that a resumed run on the same machine keeps them)."""
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    G_init: dict[str, torch.Tensor]
    """G's initial weights (CPU), kept for comparisons with the trained ones."""
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    precision: Precision
    augment: Augment
    fixed_z: torch.Tensor
    """The fixed evaluation latents (sample grids)."""
    step: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """One row per log step: ``step`` and the interval's rank-averaged metrics."""
    best: Optional[dict[str, Any]] = None
    """``{"step", "fid", "G_ema"}``: the best-scored averaged generator so far."""
    diagnosed: dict[str, Diagnosis] = dataclasses.field(default_factory=dict)
    """Failure modes found so far (name → latest ``gans.diagnosis.Diagnosis``)."""
    stopped_by: list[str] = dataclasses.field(default_factory=list)
    """The ``train.stop_on`` modes that ended the run."""

    @classmethod
    def create(
        cls,
        cfg: GANConfig,
        decision: precision_choice.Decision,
        device: torch.device,
        world_size: int,
        resume: Optional[dict[str, Any]] = None,
    ) -> TrainState:
        """A fresh run's state on ``device`` (the same initial weights on every rank), or ``resume``'s."""
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        G, D = build_models(cfg)
        memory_format = memory_format_of(decision)
        G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
        precision = Precision.of(device, decision)
        G_ema = make_ema(G)
        G_init = cpu_state_dict(G)
        opt_g, opt_d = make_optimizers(cfg, G, D)
        augment = Augment.create(cfg.augment)
        fixed_z_generator = torch.Generator().manual_seed(cfg.train.seed)
        fixed_z = torch.randn(cfg.train.n_fixed, cfg.model.z_dim, generator=fixed_z_generator)
        state = cls(cfg, world_size, decision, G, D, G_ema, G_init, opt_g, opt_d, precision, augment, fixed_z)
        if resume is not None:
            state.load_checkpoint(resume)
        return state

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout of the models, and of the image batches to feed them."""
        return memory_format_of(self.decision)

    def to_checkpoint(self) -> dict[str, Any]:
        """The full state as a checkpoint dict.

        The weights are copied to the CPU and the optimizers' state is copied, so a kept dict (the last good
        snapshot a diverged run rolls back to) stays as it was; the history list is shared.
        """
        return {
            "config": self.cfg,
            "step": self.step,
            "world_size": self.world_size,
            "G": cpu_state_dict(self.G),
            "D": cpu_state_dict(self.D),
            "G_ema": cpu_state_dict(self.G_ema),
            "G_init": self.G_init,
            "opt_g": copy.deepcopy(self.opt_g.state_dict()),
            "opt_d": copy.deepcopy(self.opt_d.state_dict()),
            "scalers": {"d": self.precision.scaler_d.state_dict(), "g": self.precision.scaler_g.state_dict()},
            "rng": {"torch": torch.get_rng_state()},
            "fixed_z": self.fixed_z,
            "history": self.history,
            "best": self.best,
            "augment_p": self.augment.p,
            "diagnosis": [diagnosis.to_dict() for _, diagnosis in sorted(self.diagnosed.items())],
            "stopped_by": list(self.stopped_by),
            "precision": self.decision.to_dict(),
        }

    def load_checkpoint(self, saved: dict[str, Any]) -> None:
        """Continue from the checkpoint dict ``saved`` (``gans.checkpoint.load``); ``ConfigError`` if its run differs.

        The diagnoses and the stop reason start afresh: the next log step diagnoses the history again. The
        precision decision was taken from ``saved`` before the models were built (``gans.loop.choose_precision``).
        """
        conflicts = resume_conflicts(saved["config"], int(saved["world_size"]), self.cfg, self.world_size)
        if conflicts:
            raise ConfigError(
                f"Cannot resume: the checkpoint's run differs ({'; '.join(conflicts)}); "
                "set train.resume: false to start fresh."
            )
        self.G.load_state_dict(saved["G"])
        self.D.load_state_dict(saved["D"])
        self.G_ema.load_state_dict(saved["G_ema"])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        self.G_init, self.fixed_z = saved["G_init"], saved["fixed_z"]
        self.step = int(saved["step"])
        # A state rolled back after divergence logged past its step.
        self.history = [row for row in saved["history"] if row["step"] <= self.step]
        self.best = saved.get("best")
        self.augment.p = float(saved.get("augment_p", self.augment.p))
        torch.set_rng_state(saved["rng"]["torch"])
        scalers = ((self.precision.scaler_d, saved["scalers"]["d"]), (self.precision.scaler_g, saved["scalers"]["g"]))
        for scaler, saved_scaler in scalers:
            if saved_scaler:  # empty when the saved run trained without AMP
                scaler.load_state_dict(saved_scaler)

    def keep_if_best(self, fid: float) -> None:
        """Keep G_ema's weights as ``best`` when ``fid`` (just measured on them) is the lowest so far."""
        if self.best is None or fid < self.best["fid"]:
            self.best = {"step": self.step, "fid": fid, "G_ema": cpu_state_dict(self.G_ema)}

    def rolled_back(self, last_good: dict[str, Any]) -> dict[str, Any]:
        """What a run stopped by divergence keeps: the checkpoint ``last_good`` with this step's history and verdict.

        The weights are broken, so they are never saved; the history and diagnoses are the evidence.
        """
        now = self.to_checkpoint()
        return {**last_good, **{key: now[key] for key in ROLLBACK_KEYS}}
