"""SAGAN (Zhang et al. 2019): DCGAN-shaped G and D with self-attention and spectral norm on every layer."""

from __future__ import annotations

import torch
from torch import nn

from gans.models.families import MODELS
from gans.models.layers import SelfAttention, apply_spectral_norm, doubling_levels, init_dcgan_weights


class SAGANGenerator(nn.Module):
    """z → SN dense → [4, 4] → (SN ConvT ×2, BN, ReLU)* with self-attention at ``attention_res`` → tanh."""

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], width: int, attention_res: int) -> None:
        super().__init__()
        channels, resolution, _ = image_shape
        levels = doubling_levels(resolution)
        self.z_dim = z_dim
        top = width * 2 ** (levels - 1)
        layers: list[nn.Module] = [
            nn.Linear(z_dim, top * 16),
            nn.Unflatten(1, (top, 4, 4)),
            nn.BatchNorm2d(top),
            nn.ReLU(),
        ]
        side = 4
        for level in range(levels - 1):
            c_in, c_out = top // 2**level, top // 2 ** (level + 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
            side *= 2
            if side == attention_res:
                layers.append(SelfAttention(c_out))  # [N, c_out, side, side]
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)
        apply_spectral_norm(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)  # [N, C, R, R] in [-1, 1]


class SAGANDiscriminator(nn.Module):
    """image → (SN Conv ×½, LeakyReLU)* with self-attention at ``attention_res`` → SN Conv 4×4 → logit."""

    def __init__(self, image_shape: tuple[int, int, int], width: int, attention_res: int) -> None:
        super().__init__()
        channels, resolution, _ = image_shape
        levels = doubling_levels(resolution)
        layers: list[nn.Module] = []
        c_in, side = channels, resolution
        for level in range(levels):
            c_out = width * 2**level
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.1)]
            c_in, side = c_out, side // 2
            if side == attention_res:
                layers.append(SelfAttention(c_out))  # [N, c_out, side, side]
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))  # [N, 1, 1, 1]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)
        apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten()  # [N] logits


@MODELS.register("sagan")
class SAGAN:
    resolutions = (32, 64, 128)

    @staticmethod
    def generator(cfg) -> nn.Module:
        return SAGANGenerator(cfg.model.z_dim, cfg.image_shape, cfg.model.g_width, cfg.attention_res)

    @staticmethod
    def discriminator(cfg) -> nn.Module:
        return SAGANDiscriminator(cfg.image_shape, cfg.model.d_width, cfg.attention_res)
