"""Exponential moving average of generator weights (Karras et al. 2018; Yazıcı et al. 2019)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model for parameters; buffers (BatchNorm statistics) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    copy_buffers(ema, model)


@torch.no_grad()
def copy_buffers(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s buffers (BatchNorm running statistics) into ``target``; parameters are left alone."""
    for b_target, b_source in zip(target.buffers(), source.buffers()):
        b_target.copy_(b_source)


@torch.no_grad()
def standing_statistics(
    generator: nn.Module, z_dim: int, samples: int = 1024, batch_size: int = 64, seed: int = 0
) -> nn.Module:
    """Recompute ``generator``'s BatchNorm running statistics from its own outputs ("standing statistics").

    An EMA generator carries the statistics of the live G, whose weights differ from the averaged ones;
    this resets them and takes the exact mean/variance of each BatchNorm input over ``samples`` latents
    (cumulative average: ``momentum=None``). Deterministic for a given ``seed``. Returns the generator in
    eval mode; one without BatchNorm is returned unchanged.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator.eval()
    for m in norms:
        m.train()
    device = next(generator.parameters()).device
    noise = torch.Generator().manual_seed(seed)
    for start in range(0, samples, batch_size):
        generator(torch.randn(min(batch_size, samples - start), z_dim, generator=noise).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return generator.eval()
