"""One discriminator update and one generator update. Pure compute: returns floats, does no I/O.

``D`` may be DDP-wrapped (its gradients are averaged across ranks); ``G_plain`` and ``D_plain`` are the
unwrapped modules, used where no gradient of theirs is needed so DDP does no useless all-reduce (and,
for the gradient penalty, no double backward through DDP).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from gans.losses import gradient_penalty


@dataclass
class Precision:
    """Mixed precision for one device: autocast plus a GradScaler per network (all no-ops when disabled)."""

    enabled: bool
    device_type: str
    scaler_d: torch.amp.GradScaler
    scaler_g: torch.amp.GradScaler

    @classmethod
    def create(cls, device: torch.device, enabled: bool) -> "Precision":
        return cls(
            enabled,
            device.type,
            torch.amp.GradScaler(device.type, enabled=enabled),
            torch.amp.GradScaler(device.type, enabled=enabled),
        )

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, enabled=self.enabled)


FULL_PRECISION = Precision.create(torch.device("cpu"), enabled=False)


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
    G_plain: nn.Module,
    D: nn.Module,
    opt_d: torch.optim.Optimizer,
    loss,
    real: torch.Tensor,
    z: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    D_plain: Optional[nn.Module] = None,
    precision: Precision = FULL_PRECISION,
) -> dict[str, float]:
    """One D update on a real batch and G(z); returns D loss, accuracies, penalty and gradient norm.

    "Accuracy" counts logits on the right side of 0 (for hinge/WGAN/LSGAN a sign, not a probability).
    """
    with torch.no_grad(), precision.autocast():
        fake = G_plain(z)
    with precision.autocast():
        if loss.gp_weight > 0:  # replays D(real)'s dropout masks: the penalty is on the function that was scored
            penalty_critic = replaying_randomness(D_plain or D, real.device)
        real_logits, fake_logits = D(real).float(), D(fake).float()
        d_loss = loss.d_loss(real_logits, fake_logits, generator=generator)
        penalty = torch.zeros(())
        if loss.gp_weight > 0:
            penalty = gradient_penalty(penalty_critic, real, fake, loss.gp_weight, precision.scaler_d)
    stats = {
        "d_loss": float(d_loss.detach()),
        "d_acc_real": float((real_logits > 0).float().mean()),
        "d_acc_fake": float((fake_logits < 0).float().mean()),
    }
    if loss.gp_weight > 0:
        stats["gradient_penalty"] = float(penalty.detach())
    stats["d_grad_norm"] = _update(opt_d, precision.scaler_d, d_loss + penalty, D.parameters())
    return stats


def generator_step(
    G: nn.Module,
    D_plain: nn.Module,
    opt_g: torch.optim.Optimizer,
    loss,
    z: torch.Tensor,
    precision: Precision = FULL_PRECISION,
) -> dict[str, float]:
    """One G update through a frozen D; returns G loss and gradient norm."""
    D_plain.requires_grad_(False)
    try:
        with precision.autocast():
            g_loss = loss.g_loss(D_plain(G(z)).float())
        norm = _update(opt_g, precision.scaler_g, g_loss, G.parameters())
    finally:
        D_plain.requires_grad_(True)
    return {"g_loss": float(g_loss.detach()), "g_grad_norm": norm}
