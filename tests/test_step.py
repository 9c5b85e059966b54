import pytest
import torch

from gans.ema import copy_buffers, make_ema, update_ema
from gans.losses import build_loss
from gans.models import build_models
from gans.step import discriminator_step, generate, generator_step, make_optimizers, replaying_randomness
from tests.helpers import tiny_config


def _max_change(before, module):
    return max((p.detach() - before[name]).abs().max().item() for name, p in module.named_parameters())


def test_both_learning_rates_are_applied():
    """Adam's first step moves every weight with a gradient by ≈ lr, so each net moves by its own lr."""
    cfg = tiny_config(optim={"lr_g": 1e-4, "lr_d": 4e-4, "betas_g": [0.0, 0.9], "betas_d": [0.5, 0.99]})
    torch.manual_seed(0)
    G, D = build_models(cfg)
    opt_g, opt_d = make_optimizers(cfg, G, D)
    loss = build_loss(cfg.loss)
    real = torch.rand(4, 1, 32, 32) * 2 - 1

    before_g = {n: p.detach().clone() for n, p in G.named_parameters()}
    before_d = {n: p.detach().clone() for n, p in D.named_parameters()}
    fake = generate(G, torch.randn(4, 8))
    stats = discriminator_step(D, opt_d, loss, real, fake)
    assert _max_change(before_g, G) == 0.0  # the D step leaves G alone
    assert _max_change(before_d, D) == pytest.approx(4e-4, rel=0.01)
    assert set(stats) == {"d_loss", "d_acc_real", "d_acc_fake", "d_real_sign", "d_grad_norm"}

    before_d = {n: p.detach().clone() for n, p in D.named_parameters()}
    stats = generator_step(G, D, opt_g, loss, fake)  # learns from the samples D was just updated on
    assert _max_change(before_g, G) == pytest.approx(1e-4, rel=0.01)
    assert _max_change(before_d, D) == 0.0  # the G step leaves D alone
    assert all(p.requires_grad for p in D.parameters())
    assert stats["g_grad_norm"] > 0


def test_ema_arithmetic():
    model = torch.nn.Linear(3, 2)
    model.register_buffer("counter", torch.zeros(1))
    ema = make_ema(model)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
        model.counter.fill_(7)
    update_ema(ema, model, decay=0.9)
    assert torch.allclose(ema.weight, start + 0.1)  # 0.9·w + 0.1·(w + 1)
    assert ema.counter.item() == 7  # buffers are copied
    update_ema(ema, model, decay=0.0)
    assert torch.equal(ema.weight, model.weight)
    assert not any(p.requires_grad for p in ema.parameters())


def test_copy_buffers_copies_statistics_and_leaves_weights():
    model = torch.nn.BatchNorm1d(3)
    ema = make_ema(model)
    with torch.no_grad():
        model.weight.add_(1.0)
        model.running_mean.fill_(5.0)
    copy_buffers(ema, model)
    assert torch.equal(ema.running_mean, model.running_mean)
    assert torch.equal(ema.weight, torch.ones(3))  # the average is not touched


def test_the_gradient_penalty_sees_the_dropout_mask_of_the_scored_real_batch():
    """The MLP critic draws a dropout mask per forward; the penalty's forward replays the one D(real) used."""
    cfg = tiny_config(model={"name": "mlp", "d_dropout": 0.5}, loss={"name": "wgan-gp"})
    torch.manual_seed(0)
    _, D = build_models(cfg)
    real = torch.rand(4, 1, 32, 32) * 2 - 1
    critic = replaying_randomness(D, real.device)
    scored = D(real)
    assert not torch.equal(D(real), scored)  # a plain second forward draws another mask
    assert torch.equal(critic(real), scored) and torch.equal(critic(real), scored)  # the replay gives the same function
    after = torch.rand(1)
    torch.manual_seed(0)
    build_models(cfg), torch.rand(4, 1, 32, 32), D(real), D(real)  # the same draws without the replays
    assert torch.equal(torch.rand(1), after)  # replaying leaves the global random stream as it was
