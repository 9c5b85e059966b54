"""EMA of G's weights, and standing BatchNorm statistics recomputed from G's own samples."""

from __future__ import annotations

import math

import pytest
import torch

from gans.ema import ema_decay_at, make_ema, standing_statistics, update_ema
from gans.models import build_models
from tests.helpers import tiny_config


def test_ema_moves_towards_the_model_by_one_minus_decay():
    G, _ = build_models(tiny_config())
    ema = make_ema(G)
    before = [p.clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    update_ema(ema, G, decay=0.9)
    for old, new in zip(before, ema.parameters()):
        assert torch.allclose(new, old + 0.1, atol=1e-6)


def test_standing_statistics_are_the_exact_moments_of_the_generators_own_batchnorm_inputs():
    G, _ = build_models(tiny_config())
    norms = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms  # the DCGAN generator normalises its hidden layers
    for m in norms:  # statistics of some other network, as the EMA generator inherits them from the live G
        m.running_mean.fill_(3.0)
        m.running_var.fill_(7.0)
    standing_statistics(G, z_dim=8, samples=96, batch_size=32, seed=5)
    assert not G.training and all(m.momentum == 0.1 for m in norms)  # momentum restored, eval mode

    # Recompute the first BatchNorm's input over the same 96 latents with the (now fixed) earlier layers.
    inputs = []
    hook = norms[0].register_forward_hook(lambda module, args, out: inputs.append(args[0].detach()))
    noise = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(32, 8, generator=noise))
    hook.remove()
    batches = torch.cat(inputs)  # [96, C, H, W]
    assert torch.allclose(norms[0].running_mean, batches.mean(dim=(0, 2, 3)), atol=1e-5)
    # Cumulative average of per-batch unbiased variances (what momentum=None keeps).
    per_batch = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in inputs]).mean(0)
    assert torch.allclose(norms[0].running_var, per_batch, rtol=1e-4)

    again, _ = build_models(tiny_config())
    again.load_state_dict(G.state_dict())
    standing_statistics(again, z_dim=8, samples=96, batch_size=32, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(again.buffers(), G.buffers()))  # deterministic for a seed


def test_the_ema_decay_ramps_up_as_in_stylegan2_ada_and_is_capped_by_ema_decay():
    """Half-life min(H, step · rampup) steps with H = ln 0.5 / ln 0.995 ≈ 138.3: the ramp ends at step ≈ 2765.7."""
    half_life = math.log(0.5) / math.log(0.995)
    assert ema_decay_at(0, 0.995, 0.05) == 0.0  # G_ema becomes G
    assert ema_decay_at(10, 0.995, 0.05) == 0.5**2  # half-life 0.5 steps
    assert ema_decay_at(100, 0.995, 0.05) == pytest.approx(0.5 ** (1 / 5))
    assert ema_decay_at(2765, 0.995, 0.05) == pytest.approx(0.5 ** (1 / 138.25))
    assert ema_decay_at(2765, 0.995, 0.05) < 0.995
    assert ema_decay_at(2766, 0.995, 0.05) == 0.995 == ema_decay_at(10**6, 0.995, 0.05)
    assert 2765 < half_life / 0.05 < 2766
    decays = [ema_decay_at(step, 0.995, 0.05) for step in range(0, 4000, 7)]
    assert decays == sorted(decays) and max(decays) == 0.995
    for off in (None, 0.0):
        assert ema_decay_at(0, 0.995, off) == ema_decay_at(500, 0.995, off) == 0.995
    assert ema_decay_at(50, 0.0, 0.05) == 0.0  # decay 0 copies G at every step, ramp or not
