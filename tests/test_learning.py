"""The vanilla GAN learns a 2-D mixture of 8 Gaussians on a ring (the classic mode-coverage check)."""

import math

import numpy as np
import pytest
import torch

from gans.config import LossConfig
from gans.ema import make_ema, update_ema
from gans.losses import build_loss
from gans.models.mlp import MLPDiscriminator, MLPGenerator
from gans.step import discriminator_step, generate, generator_step

pytestmark = pytest.mark.slow  # hundreds of training steps: `make test-fast` leaves it out

MODES = 8
RADIUS, STD = 0.7, 0.03


def ring_centres() -> torch.Tensor:
    angles = torch.arange(MODES) * 2 * math.pi / MODES
    return RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)  # [8, 2]


def sample_ring(n: int, generator: torch.Generator) -> torch.Tensor:
    centres = ring_centres()[torch.randint(0, MODES, (n,), generator=generator)]
    return centres + STD * torch.randn(n, 2, generator=generator)


def coverage(samples: torch.Tensor, min_share: float = 0.02) -> tuple[int, float]:
    """(modes holding ≥ ``min_share`` of the samples within 3σ of their centre, share of samples within 3σ)."""
    nearest, which = torch.cdist(samples, ring_centres()).min(dim=1)  # [N]
    close = nearest < 3 * STD
    counts = np.bincount(which[close].numpy(), minlength=MODES)
    return int((counts >= min_share * len(samples)).sum()), float(close.float().mean())


def test_vanilla_gan_covers_most_modes_of_a_ring_of_gaussians():
    torch.manual_seed(0)
    data_rng = torch.Generator().manual_seed(1)
    z_dim = 8
    G = MLPGenerator(z_dim, (2,), hidden=128)
    D = MLPDiscriminator((2,), hidden=128, dropout=0.0)
    G_ema = make_ema(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss = build_loss(LossConfig(label_smoothing=0.0))

    z_eval = torch.randn(2000, z_dim, generator=torch.Generator().manual_seed(2))
    G.eval()
    with torch.no_grad():
        modes_before, _ = coverage(G(z_eval))
    G.train()

    for _ in range(1000):
        fake = generate(G, torch.randn(64, z_dim))
        discriminator_step(D, opt_d, loss, sample_ring(64, data_rng), fake)
        generator_step(G, D, opt_g, loss, fake)
        update_ema(G_ema, G, 0.99)

    with torch.no_grad():
        modes, on_target = coverage(G_ema(z_eval))
    assert modes_before <= 2, "the untrained generator should not already cover the ring"
    assert modes >= 6, f"only {modes} of {MODES} modes covered"
    assert on_target >= 0.3, f"only {on_target:.0%} of samples lie within 3σ of a mode"
