"""Building blocks shared by the architectures."""

from __future__ import annotations

import math

import torch
from torch import nn


def doubling_levels(resolution: int) -> int:
    """Number of ×2 stages between a 4×4 feature map and ``resolution``."""
    return int(math.log2(resolution // 4))


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016): conv/linear weights ~ N(0, 0.02), BatchNorm γ ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every conv, transposed conv and dense layer of ``module`` (Miyato et al. 2018).

    torch's parametrization keeps a persistent u and runs one power iteration per training-mode forward;
    transposed convs are normalised along their output-channel dimension.
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            spectral_norm(layer)
    return module


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): y = γ · v(h · βᵀ) + x, with γ initialised to 0.

    f and g (queries and keys) have C/8 channels, h (values) C/2 and v projects back to C, as in the
    paper's released code. β = softmax(fᵀg) over key positions, so the block starts purely local and
    learns how much non-local signal to use.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner, values = max(channels // 8, 1), max(channels // 2, 1)
        self.f = nn.Conv2d(channels, inner, 1, bias=False)
        self.g = nn.Conv2d(channels, inner, 1, bias=False)
        self.h = nn.Conv2d(channels, values, 1, bias=False)
        self.v = nn.Conv2d(values, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """β [N, HW, HW]: row j is the distribution over positions i that position j attends to."""
        queries = self.f(x).flatten(2)  # [N, C/8, HW]
        keys = self.g(x).flatten(2)  # [N, C/8, HW]
        return torch.bmm(queries.transpose(1, 2), keys).softmax(dim=-1)  # [N, HW, HW]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        values = self.h(x).flatten(2)  # [N, C/2, HW]
        attended = torch.bmm(values, self.attention(x).transpose(1, 2))  # [N, C/2, HW]: o_j = Σ_i β_ji h_i
        return x + self.gamma * self.v(attended.view(n, -1, height, width))  # [N, C, H, W]
