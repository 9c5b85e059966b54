"""Differentiable augmentation of D's inputs for small data sets: DiffAugment, with an ADA-style adaptive mode.

With ~100 faces the discriminator memorises the real set within a few hundred steps: its accuracy pins at
1 and G's gradients stop carrying information. DiffAugment (Zhao et al. 2020) transforms *every* image D
sees, real and generated, with the same random differentiable policy, so D cannot memorise pixels and G
still gets gradients through the transforms. ADA (Karras et al. 2020) applies each transform to a sample
with probability ``p`` and steers ``p`` from how sure D is on real images: r = E[sign(D(real) − b)] above the
target (D overfits) raises ``p``, below lowers it; b is the loss's decision boundary (``gans.losses``: 0 for
bce and hinge, 0.5 for lsgan), and a loss without one (wgan-gp) cannot be adaptive (``check_adaptive_loss``).

The ops work on images in [-1, 1], shape [N, C, H, W], and draw from torch's global generator, which the
loop seeds per step and rank (a resumed run draws the same transforms). Registered in ``AUGMENTATIONS``;
``augment.policy`` in params.yaml names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from gans.config import AugmentConfig, ConfigError, require_registered
from gans.losses import decision_boundary
from gans.registry import Registry

Op = Callable[[torch.Tensor], torch.Tensor]
AUGMENTATIONS: Registry[Op] = Registry("augmentation")


def _per_sample(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


@AUGMENTATIONS.register("color")
def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (±0.5), saturation (×[0, 2], a no-op on one channel) and contrast (×[0.5, 1.5])."""
    x = x + (_per_sample(x, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_per_sample(x, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample(x, 1, 1, 1) + 0.5) + mean


@AUGMENTATIONS.register("translation")
def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side in x and y (whole pixels), filling with 0 (mid-grey)."""
    n, _, h, w = x.shape
    max_shift = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_shift[0], max_shift[0] + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_shift[1], max_shift[1] + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + shift_y + max_shift[0]).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + shift_x + max_shift[1]).expand(n, h, w)
    padded = F.pad(x, (max_shift[1], max_shift[1], max_shift[0], max_shift[0]))  # [N, C, H+2s, W+2s]
    flat = padded.flatten(2)  # [N, C, (H+2s)(W+2s)]
    index = (rows * padded.shape[3] + cols).flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
    return flat.gather(2, index).view_as(x)


@AUGMENTATIONS.register("cutout")
def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-grey) one square of ``ratio`` × the side at a random centre of each image (clipped at borders)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centre_y = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device)
    centre_x = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device)
    dy = torch.arange(h, device=x.device).view(1, h, 1) - centre_y + size_y // 2  # [N, H, 1]: row within the square
    dx = torch.arange(w, device=x.device).view(1, 1, w) - centre_x + size_x // 2  # [N, 1, W]
    inside = (dy >= 0) & (dy < size_y) & (dx >= 0) & (dx < size_x)  # [N, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


def check_augment_config(cfg: AugmentConfig) -> None:
    """Every name in ``augment.policy`` is a registered augmentation."""
    for name in cfg.policy:
        require_registered(AUGMENTATIONS, name, "augment.policy")


def check_adaptive_loss(cfg: AugmentConfig, loss_name: str) -> None:
    """``ConfigError`` when ``augment.adaptive`` is on with a loss that has no decision boundary (wgan-gp).

    ADA's controller reads E[sign(D(real) − boundary)]; a critic without a boundary gives that sign no meaning.
    """
    if cfg.adaptive and decision_boundary(loss_name) is None:
        raise ConfigError(
            f"augment.adaptive=true needs a loss with a decision boundary and loss.name={loss_name!r} has none "
            "(its critic's offset is arbitrary): use a fixed augment.p or another loss."
        )


@dataclass
class Augment:
    """The policy of one run and its current probability ``p`` (mutable: the adaptive mode steers it).

    Calling it transforms a batch: each op is applied to each image independently with probability ``p``.
    With an empty policy, or ``p`` = 0, it returns its input and draws no random numbers.
    """

    ops: tuple[Op, ...]
    p: float
    adaptive: bool = False
    target: float = 0.6
    images_per_unit: float = 10_000.0  # real images over which p may move by 1

    @classmethod
    def create(cls, cfg: AugmentConfig) -> Augment:
        check_augment_config(cfg)
        return cls(
            ops=tuple(AUGMENTATIONS.get(name) for name in cfg.policy),
            p=0.0 if cfg.adaptive else cfg.p,
            adaptive=cfg.adaptive,
            target=cfg.target,
            images_per_unit=cfg.ada_kimg * 1000,
        )

    @property
    def active(self) -> bool:
        return bool(self.ops) and self.p > 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        for op in self.ops:
            transformed = op(x)
            if self.p >= 1:
                x = transformed
            else:
                chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
                x = torch.where(chosen, transformed, x)
        return x

    def adapt(self, real_sign: float, real_images: int) -> None:
        """ADA's controller: move ``p`` towards more augmentation when E[sign(D(real) − b)] is above the target.

        ``real_sign`` (``d_real_sign``, b the loss's decision boundary) is measured over the last ``real_images``
        real images (the same on every rank); ``p`` moves by at most ``real_images / images_per_unit`` and stays
        in [0, 1].
        """
        if not self.adaptive or not self.ops:
            return
        direction = 1.0 if real_sign > self.target else -1.0 if real_sign < self.target else 0.0
        self.p = min(max(self.p + direction * real_images / self.images_per_unit, 0.0), 1.0)
