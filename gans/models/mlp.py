"""The vanilla GAN of Goodfellow et al. (2014): fully connected G and D on flattened samples.

Samples may be images [C, H, W] or plain vectors (e.g. [2] for a 2-D toy mixture).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gans.models.families import MODELS
from gans.models.layers import init_dcgan_weights


class MLPGenerator(nn.Module):
    """z → dense(h) → dense(h) → BatchNorm → ReLU → dense → tanh, reshaped to ``out_shape``."""

    def __init__(self, z_dim: int, out_shape: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(self.out_shape)),
            nn.Tanh(),
        )
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)  # [N, *out_shape] in [-1, 1]


class MLPDiscriminator(nn.Module):
    """flatten → dense(h) → LeakyReLU → dense(h) → LeakyReLU → dropout → logit."""

    def __init__(self, in_shape: tuple[int, ...], hidden: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(in_shape), hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # [N] logits


@MODELS.register("mlp")
class MLP:
    resolutions = None  # any: the model works on flattened pixels

    @staticmethod
    def generator(cfg) -> nn.Module:
        return MLPGenerator(cfg.model.z_dim, cfg.image_shape, hidden=2 * cfg.model.g_width)

    @staticmethod
    def discriminator(cfg) -> nn.Module:
        return MLPDiscriminator(cfg.image_shape, hidden=4 * cfg.model.d_width, dropout=cfg.model.d_dropout)
