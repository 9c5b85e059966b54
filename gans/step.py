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
        return cls.create(device, decision.amp, getattr(torch, decision.dtype) if decision.amp else None)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


FULL_PRECISION = Precision.create(torch.device("cpu"), enabled=False)


def make_optimizers(cfg, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D with their own learning rates and betas (TTUR); fused kernels (one pass per update)."""
    return (
        torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas_g, fused=True),
        torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas_d, fused=True),
    )


def _update(optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor, parameters) -> float:
    """Backward, unscale, measure the gradient norm, step; returns the norm."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = grad_norm(parameters)
    scaler.step(optimizer)
    scaler.update()
    return norm


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
    """One D update on a real and a generated batch; returns D loss, accuracies, penalties and gradient norm.

    ``fake`` may carry G's graph (to be reused by ``generator_step``); D sees it detached. ``augment``
    (``gans.augment.Augment``) transforms both batches before D; penalties are taken on what D saw.
    "Accuracy" counts logits on the right side of 0 (for hinge/WGAN/LSGAN a sign, not a probability);
    ``d_real_sign`` is E[sign(D(real))], the overfitting measure that steers adaptive augmentation.
    """
    fake = fake.detach()
    if augment is not None:
        real, fake = augment(real), augment(fake)
    penalised = loss.gp_weight > 0 or r1_weight > 0
    with precision.autocast():
        if penalised:  # replays D(real)'s dropout masks: the penalty is on the function that was scored
            penalty_critic = replaying_randomness(D_plain or D, real.device)
        real_logits, fake_logits = D(real).float(), D(fake).float()
        d_loss = loss.d_loss(real_logits, fake_logits, generator=generator)
        penalties = {}
        if loss.gp_weight > 0:
            penalties["gradient_penalty"] = gradient_penalty(
                penalty_critic, real, fake, loss.gp_weight, precision.scaler_d
            )
        if r1_weight > 0:
            penalties["r1_penalty"] = r1_penalty(penalty_critic, real, r1_weight, precision.scaler_d)
    stats = {
        "d_loss": float(d_loss.detach()),
        "d_acc_real": float((real_logits > 0).float().mean()),
        "d_acc_fake": float((fake_logits < 0).float().mean()),
        "d_real_sign": float(real_logits.detach().sign().mean()),
    }
    stats.update({name: float(value.detach()) for name, value in penalties.items()})
    stats["d_grad_norm"] = _update(opt_d, precision.scaler_d, d_loss + sum(penalties.values()), D.parameters())
    return stats


def generator_step(
    G: nn.Module,
    D_plain: nn.Module,
    opt_g: torch.optim.Optimizer,
    loss,
    fake: torch.Tensor,
    precision: Precision = FULL_PRECISION,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> dict[str, float]:
    """One G update through a frozen D; ``fake`` is G(z) with its graph. Returns G loss and gradient norm.

    As in the DCGAN reference, G learns from the batch D was just updated on: one G forward per step.
    ``augment`` transforms ``fake`` as D's update did (G learns through the differentiable transforms).
    """
    if augment is not None:
        fake = augment(fake)
    D_plain.requires_grad_(False)
    try:
        with precision.autocast():
            g_loss = loss.g_loss(D_plain(fake).float())
        norm = _update(opt_g, precision.scaler_g, g_loss, G.parameters())
    finally:
        D_plain.requires_grad_(True)
    return {"g_loss": float(g_loss.detach()), "g_grad_norm": norm}


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
