"""One discriminator update and one generator update. Pure compute: returns floats, does no I/O.

A step is ``fake = generate(G, z)``, ``discriminator_step(D, ..., real, fake)``, then
``generator_step(G, D_plain, ..., fake)``: G's forward runs once and both updates use its samples.
``G`` and ``D`` may be DDP-wrapped (their gradients are averaged across ranks); ``D_plain`` is the
unwrapped D, used where no gradient of D is needed so DDP does no useless all-reduce (and, for the
gradient penalty, no double backward through DDP).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from gans.augment import Augment
from gans.losses import build_loss, gradient_penalty, r1_penalty
from gans.models import build_models


@dataclass
class Precision:
    """Mixed precision for one device: autocast plus a GradScaler per network (all no-ops when disabled).

    bfloat16 keeps float32's exponent range, so it needs no loss scaling; float16 (CUDA without native
    bf16) gets a GradScaler per network. ``gans.precision`` decides whether and which (``Decision``).
    """

    enabled: bool
    device_type: str
    dtype: torch.dtype
    scaler_d: torch.amp.GradScaler
    scaler_g: torch.amp.GradScaler

    @classmethod
    def create(cls, device: torch.device, enabled: bool, dtype: Optional[torch.dtype] = None) -> Precision:
        """``dtype`` defaults to bfloat16 on the CPU and float16 on CUDA."""
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
        scaled = enabled and dtype == torch.float16
        return cls(
            enabled,
            device.type,
            dtype,
            torch.amp.GradScaler(device.type, enabled=scaled),
            torch.amp.GradScaler(device.type, enabled=scaled),
        )

    @classmethod
    def of(cls, device: torch.device, decision) -> Precision:
        """The precision a ``gans.precision.Decision`` names."""
        return cls.create(device, decision.amp, decision.torch_dtype)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def loss_scales(self) -> dict[str, float]:
        """``amp_scale_d`` and ``amp_scale_g``, the GradScalers' current loss scales, under fp16; empty otherwise."""
        if not self.scaler_d.is_enabled():
            return {}
        return {"amp_scale_d": self.scaler_d.get_scale(), "amp_scale_g": self.scaler_g.get_scale()}


FULL_PRECISION = Precision.create(torch.device("cpu"), enabled=False)


def make_optimizers(cfg, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D with their own learning rates and betas (TTUR); fused kernels (one pass per update)."""
    return (
        torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas_g, fused=True),
        torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas_d, fused=True),
    )


def _update(optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor, parameters) -> tuple[float, bool]:
    """Backward, unscale, measure the gradient norm, step; returns the norm and whether the step was skipped.

    An enabled GradScaler skips the optimizer step when the scaled gradients overflowed (inf/NaN) and lowers its
    scale: that is how fp16 loss scaling finds its scale, not divergence. The scale going down marks the skip.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = grad_norm(parameters)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    return norm, scale is not None and scaler.get_scale() < scale


def update_stats(net: str, norm: float, skipped: bool, measured: dict[str, float]) -> dict[str, float]:
    """An update's statistics: ``amp_skipped_<net>`` (1: the GradScaler skipped it, else 0), and the gradient norm
    ``<net>_grad_norm`` with the penalties ``measured`` only for an applied update.

    A skipped update's norm and penalties are those of an overflowing loss scale, so they are left out (the
    interval means are over the applied updates) rather than reported as inf.
    """
    if skipped:
        return {f"amp_skipped_{net}": 1.0}
    return {**measured, f"{net}_grad_norm": norm, f"amp_skipped_{net}": 0.0}


def logit_stats(real_logits: torch.Tensor, fake_logits: torch.Tensor, boundary: Optional[float]) -> dict[str, float]:
    """D's accuracies on real and fake logits about the loss's decision ``boundary``, and ``d_real_sign``:
    E[sign(D(real) − boundary)], the overfitting measure that steers adaptive augmentation.

    Without a boundary (wgan-gp, whose critic has an arbitrary offset) the accuracies are taken about the midpoint
    of the batch's mean real and mean fake logits (how well the critic separates the batch) and there is no
    ``d_real_sign``.
    """
    real_logits, fake_logits = real_logits.detach(), fake_logits.detach()
    cut = (real_logits.mean() + fake_logits.mean()) / 2 if boundary is None else boundary
    stats = {
        "d_acc_real": float((real_logits > cut).float().mean()),
        "d_acc_fake": float((fake_logits < cut).float().mean()),
    }
    if boundary is not None:
        stats["d_real_sign"] = float((real_logits - boundary).sign().mean())
    return stats


def replaying_randomness(module: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` as a function whose every call draws the random numbers of the first forward after this one.

    Captures the RNG state now and restores it around each call (the global stream is left as it was), so a
    critic with dropout applies the same mask to inputs of the same shape.
    """
    devices = [device] if device.type == "cuda" else []
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if devices else None

    def call(inputs: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)
            return module(inputs)

    return call


def grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    """L2 norm of all gradients together."""
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def discriminator_step(
    D: nn.Module,
    opt_d: torch.optim.Optimizer,
    loss,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    D_plain: Optional[nn.Module] = None,
    precision: Precision = FULL_PRECISION,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    r1_weight: float = 0.0,
) -> dict[str, float]:
    """One D update on a real and a generated batch; returns D loss, accuracies, penalties, gradient norm and skip.

    ``fake`` may carry G's graph (to be reused by ``generator_step``); D sees it detached. ``augment``
    (``gans.augment.Augment``) transforms both batches before D. The WGAN-GP penalty is taken on interpolates of
    what D saw; R1 w.r.t. the un-augmented reals, through the transform that made D's real batch (``r1_penalty``).
    Accuracies and ``d_real_sign`` are about the loss's decision boundary (``logit_stats``); the gradient norm and
    penalties are left out of a step the GradScaler skipped (``update_stats``).
    """
    fake = fake.detach()
    if r1_weight > 0:  # R1's gradient flows back through the augmentation to the reals
        real = real.detach().requires_grad_(True)
    seen_real, seen_fake = (augment(real), augment(fake)) if augment is not None else (real, fake)
    penalised = loss.gp_weight > 0 or r1_weight > 0
    with precision.autocast():
        if penalised:  # replays D(real)'s dropout masks: the penalty is on the function that was scored
            penalty_critic = replaying_randomness(D_plain or D, real.device)
        real_logits, fake_logits = D(seen_real.detach()).float(), D(seen_fake).float()
        d_loss = loss.d_loss(real_logits, fake_logits, generator=generator)
        penalties = {}
        if loss.gp_weight > 0:
            penalties["gradient_penalty"] = gradient_penalty(
                penalty_critic, seen_real, seen_fake, loss.gp_weight, precision.scaler_d
            )
        if r1_weight > 0:
            penalties["r1_penalty"] = r1_penalty(penalty_critic, real, r1_weight, precision.scaler_d, seen=seen_real)
    stats = {"d_loss": float(d_loss.detach()), **logit_stats(real_logits, fake_logits, loss.boundary)}
    norm, skipped = _update(opt_d, precision.scaler_d, d_loss + sum(penalties.values()), D.parameters())
    measured = {name: float(value.detach()) for name, value in penalties.items()}
    return {**stats, **update_stats("d", norm, skipped, measured)}


def generator_step(
    G: nn.Module,
    D_plain: nn.Module,
    opt_g: torch.optim.Optimizer,
    loss,
    fake: torch.Tensor,
    precision: Precision = FULL_PRECISION,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> dict[str, float]:
    """One G update through a frozen D; ``fake`` is G(z) with its graph. Returns G loss, gradient norm and skip.

    As in the DCGAN reference, G learns from the batch D was just updated on: one G forward per step.
    ``augment`` transforms ``fake`` as D's update did (G learns through the differentiable transforms).
    """
    if augment is not None:
        fake = augment(fake)
    D_plain.requires_grad_(False)
    try:
        with precision.autocast():
            g_loss = loss.g_loss(D_plain(fake).float())
        norm, skipped = _update(opt_g, precision.scaler_g, g_loss, G.parameters())
    finally:
        D_plain.requires_grad_(True)
    return {"g_loss": float(g_loss.detach()), **update_stats("g", norm, skipped, {})}


def generate(G: nn.Module, z: torch.Tensor, precision: Precision = FULL_PRECISION, grad: bool = True) -> torch.Tensor:
    """G(z) under the step's precision; with ``grad`` the graph is kept for ``generator_step``."""
    with torch.set_grad_enabled(grad), precision.autocast():
        return G(z)


def timing_step(
    cfg, device: torch.device, batch: int, amp: bool, channels_last: bool, dtype: Optional[torch.dtype] = None
) -> Callable[[], None]:
    """One training step of ``cfg``'s models, loss and augmentation (``n_critic`` D updates, one G update) on
    fresh models and a random batch, as a zero-argument function: what ``gans.precision`` and ``bench/step.py`` time.

    Builds its models under a forked RNG, so the caller's random stream is left as it was.
    """
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):
        G, D = (net.to(device, memory_format=memory_format) for net in build_models(cfg))
        real = (torch.rand(batch, *cfg.image_shape, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    opt_g, opt_d = make_optimizers(cfg, G, D)
    loss, augment = build_loss(cfg.loss), Augment.create(cfg.augment)
    precision = Precision.create(device, amp, dtype)
    z_dim, n_critic, r1_weight = cfg.model.z_dim, cfg.n_critic, cfg.loss.r1_weight

    def step() -> None:
        for critic_step in range(n_critic):
            last = critic_step == n_critic - 1
            fake = generate(G, torch.randn(batch, z_dim, device=device), precision, grad=last)
            discriminator_step(
                D, opt_d, loss, real, fake, D_plain=D, precision=precision, augment=augment, r1_weight=r1_weight
            )
        generator_step(G, D, opt_g, loss, fake, precision=precision, augment=augment)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step
