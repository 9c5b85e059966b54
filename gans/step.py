"""One discriminator update and one generator update. Pure compute: returns floats, does no I/O.

``D`` may be DDP-wrapped (its gradients are averaged across ranks); ``G_plain`` and ``D_plain`` are the
unwrapped modules, used where no gradient of theirs is needed so DDP does no useless all-reduce.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn


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
) -> dict[str, float]:
    """One D update on a real batch and G(z); returns D loss, accuracies and gradient norm."""
    with torch.no_grad():
        fake = G_plain(z)
    real_logits, fake_logits = D(real), D(fake)
    d_loss = loss.d_loss(real_logits, fake_logits, generator=generator)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    stats = {
        "d_loss": float(d_loss.detach()),
        "d_acc_real": float((real_logits > 0).float().mean()),
        "d_acc_fake": float((fake_logits < 0).float().mean()),
        "d_grad_norm": grad_norm(D.parameters()),
    }
    opt_d.step()
    return stats


def generator_step(
    G: nn.Module,
    D_plain: nn.Module,
    opt_g: torch.optim.Optimizer,
    loss,
    z: torch.Tensor,
) -> dict[str, float]:
    """One G update through a frozen D; returns G loss and gradient norm."""
    D_plain.requires_grad_(False)
    try:
        g_loss = loss.g_loss(D_plain(G(z)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
        D_plain.requires_grad_(True)
    stats = {"g_loss": float(g_loss.detach()), "g_grad_norm": grad_norm(G.parameters())}
    opt_g.step()
    return stats
