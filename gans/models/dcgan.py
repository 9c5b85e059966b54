"""DCGAN (Radford et al. 2016): transposed-conv generator and strided-conv discriminator."""

from __future__ import annotations

import torch
from torch import nn

from gans.models.families import MODELS
from gans.models.layers import doubling_levels, init_dcgan_weights


class DCGANGenerator(nn.Module):
    """z → dense → [width·2^(L-1), 4, 4] → (ConvT ×2, BN, ReLU)* → ConvT ×2 → tanh image."""

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        channels, resolution, _ = image_shape
        levels = doubling_levels(resolution)
        self.z_dim = z_dim
        top = width * 2 ** (levels - 1)
        self.project = nn.Sequential(nn.Linear(z_dim, top * 16, bias=False), nn.Unflatten(1, (top, 4, 4)))
        blocks: list[nn.Module] = [nn.BatchNorm2d(top), nn.ReLU()]
        for level in range(levels - 1):
            c_in, c_out = top // 2**level, top // 2 ** (level + 1)
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z))  # [N, C, R, R] in [-1, 1]


class DCGANDiscriminator(nn.Module):
    """image → Conv ×½ LeakyReLU → (Conv ×½, BN, LeakyReLU)* → [.., 4, 4] → Conv 4×4 → logit.

    ``norm="none"`` drops BatchNorm (a WGAN-GP critic: the penalty is per sample, BN couples samples).
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        channels, resolution, _ = image_shape
        levels = doubling_levels(resolution)
        blocks: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]  # no BN on layer 1
        for level in range(levels - 1):
            c_in, c_out = width * 2**level, width * 2 ** (level + 1)
            if norm == "batch":
                blocks += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            else:
                blocks += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        blocks += [nn.Conv2d(width * 2 ** (levels - 1), 1, 4, 1, 0)]  # [N, 1, 1, 1]
        self.body = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten()  # [N] logits


@MODELS.register("dcgan")
class DCGAN:
    resolutions = (32, 64, 128)

    @staticmethod
    def generator(cfg) -> nn.Module:
        return DCGANGenerator(cfg.model.z_dim, cfg.image_shape, width=cfg.model.g_width)

    @staticmethod
    def discriminator(cfg) -> nn.Module:
        return DCGANDiscriminator(cfg.image_shape, width=cfg.model.d_width, norm=cfg.d_norm)
