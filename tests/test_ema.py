"""EMA of G's weights, and standing BatchNorm statistics recomputed from G's own samples."""

from __future__ import annotations

import torch

from gans.ema import make_ema, standing_statistics, update_ema
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
