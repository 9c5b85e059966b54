"""Adversarial losses as pure functions of discriminator logits.

Sign convention: every function returns a scalar to *minimise*. ``real`` and ``fake`` are the
discriminator's logits on real and generated samples (shape [N]). Nothing here calls ``backward()``,
touches an optimizer or logs.

A loss family is registered in ``LOSSES`` as a class built from a ``LossConfig`` with
``d_loss(real, fake, generator=None)`` and ``g_loss(fake)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from gans.registry import Registry

LOSSES: Registry = Registry("loss")


def bce_d_loss(
    real: torch.Tensor,
    fake: torch.Tensor,
    smoothing: float = 0.0,
    flip: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Discriminator BCE: −log σ(real) − log(1 − σ(fake)), with targets 1 − ``smoothing`` (one-sided).

    ``flip`` (bool, [N]) swaps the targets of those pairs: the real logit is pushed to 0 and the fake logit
    to 1 − smoothing (noisy labels, Salimans et al. 2016).
    """
    real_target = torch.full_like(real, 1.0 - smoothing)
    fake_target = torch.zeros_like(fake)
    if flip is not None:
        real_target, fake_target = (
            torch.where(flip, fake_target, real_target),
            torch.where(flip, real_target, fake_target),
        )
    return F.binary_cross_entropy_with_logits(real, real_target) + F.binary_cross_entropy_with_logits(
        fake, fake_target
    )


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: −log σ(fake) = softplus(−fake)."""
    return F.softplus(-fake).mean()


@LOSSES.register("bce")
class BCELoss:
    """Non-saturating GAN loss with one-sided label smoothing and optional noisy labels."""

    def __init__(self, cfg) -> None:
        self.smoothing = cfg.label_smoothing
        self.flip_prob = cfg.label_flip_prob

    def d_loss(
        self, real: torch.Tensor, fake: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        flip = None
        if self.flip_prob > 0:
            flip = torch.rand(real.shape, generator=generator, device=real.device) < self.flip_prob
        return bce_d_loss(real, fake, self.smoothing, flip)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return bce_g_loss(fake)


def build_loss(cfg):
    """The loss object for a ``LossConfig``."""
    return LOSSES.get(cfg.name)(cfg)
