"""Exponential moving average of generator weights (Karras et al. 2018; Yazıcı et al. 2019), with StyleGAN2-ADA's
warm-up of the decay (``ema_decay_at``)."""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


def ema_decay_at(step: int, decay: float, rampup: Optional[float]) -> float:
    """The EMA decay for the update after ``step`` steps: StyleGAN2-ADA's warm-up, counted in steps.

    ``decay`` has the half-life H = ln 0.5 / ln(decay) steps; during the ramp the half-life is ``step · rampup``
    steps instead, so the decay is 0.5^(1 / max(min(H, step · rampup), 1e-8)): 0 at step 0 (G_ema becomes G), then
    rising to ``decay``, reached at step H / ``rampup``. ``rampup`` None or 0, or ``decay`` 0: ``decay`` throughout.
    """
    if not rampup or decay == 0:
        return decay
    half_life = math.log(0.5) / math.log(decay)
    if step * rampup >= half_life:
        return decay
    return 0.5 ** (1 / max(step * rampup, 1e-8))


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
