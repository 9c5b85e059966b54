import math

import pytest
import torch

from gans.augment import Augment, cutout, translation
from gans.config import LossConfig
from gans.diagnosis import diagnose
from gans.ema import copy_buffers, make_ema, update_ema
from gans.losses import build_loss, r1_penalty
from gans.models import build_models
from gans.step import (
    Precision,
    discriminator_step,
    generate,
    generator_step,
    logit_stats,
    make_optimizers,
    replaying_randomness,
)
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
    assert set(stats) == {"d_loss", "d_acc_real", "d_acc_fake", "d_real_sign", "d_grad_norm", "amp_skipped_d"}

    before_d = {n: p.detach().clone() for n, p in D.named_parameters()}
    stats = generator_step(G, D, opt_g, loss, fake)  # learns from the samples D was just updated on
    assert _max_change(before_g, G) == pytest.approx(1e-4, rel=0.01)
    assert _max_change(before_d, D) == 0.0  # the G step leaves D alone
    assert all(p.requires_grad for p in D.parameters())
    assert stats["g_grad_norm"] > 0 and stats["amp_skipped_g"] == 0.0


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


# --- decision boundaries ----------------------------------------------------------------------------------------


class _MeanCritic(torch.nn.Module):
    """D(x) = mean pixel of x + b: the logits are whatever the images' means are (b starts at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1) + self.bias


def _constant_step(loss_name: str, real_value: float, fake_value: float) -> dict[str, float]:
    """``discriminator_step``'s statistics when every real logit is ``real_value`` and every fake one ``fake_value``."""
    D = _MeanCritic()
    opt_d = torch.optim.SGD(D.parameters(), lr=0.0)
    real, fake = torch.full((4, 1, 8, 8), real_value), torch.full((4, 1, 8, 8), fake_value)
    return discriminator_step(D, opt_d, build_loss(LossConfig(name=loss_name)), real, fake)


def test_lsgan_accuracies_and_real_sign_are_about_its_boundary_midway_between_targets_0_and_1():
    assert build_loss(LossConfig(name="lsgan")).boundary == 0.5
    confident = _constant_step("lsgan", 0.9, 0.1)
    assert (confident["d_acc_real"], confident["d_acc_fake"], confident["d_real_sign"]) == (1.0, 1.0, 1.0)
    unsure = _constant_step("lsgan", 0.4, 0.6)  # both on the wrong side of 0.5, though both > 0
    assert (unsure["d_acc_real"], unsure["d_acc_fake"], unsure["d_real_sign"]) == (0.0, 0.0, -1.0)
    # The same logits under the logistic losses, whose boundary is 0: every real logit is "real", every fake one too.
    for name in ("bce", "hinge"):
        bce = _constant_step(name, 0.4, 0.6)
        assert (bce["d_acc_real"], bce["d_acc_fake"], bce["d_real_sign"]) == (1.0, 0.0, 1.0)


def test_a_critic_without_a_boundary_has_shift_invariant_accuracies_and_no_real_sign():
    assert build_loss(LossConfig(name="wgan-gp")).boundary is None
    real, fake = torch.tensor([5.0, 6.0, 2.0, 7.0]), torch.tensor([3.0, 4.0, 4.5, 1.0])
    stats = logit_stats(real, fake, None)  # midpoint of the means 5 and 3.125: 4.0625
    assert stats == {"d_acc_real": 0.75, "d_acc_fake": 0.75}
    assert logit_stats(real - 100, fake - 100, None) == stats  # the critic's offset does not matter


# --- skipped fp16 updates ---------------------------------------------------------------------------------------


def _params(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _inf_gradient(parameter: torch.nn.Parameter):
    """A hook that makes ``parameter``'s gradient inf (the loss stays finite), as an fp16 overflow does."""
    return parameter.register_hook(lambda grad: torch.full_like(grad, math.inf))


def test_an_update_the_grad_scaler_skips_is_counted_and_not_divergence():
    cfg = tiny_config()
    torch.manual_seed(0)
    G, D = build_models(cfg)
    opt_g, opt_d = make_optimizers(cfg, G, D)
    loss, real = build_loss(cfg.loss), torch.rand(4, 1, 32, 32) * 2 - 1
    assert Precision.create(torch.device("cpu"), enabled=True, dtype=torch.float16).scaler_d.is_enabled()
    # Real GradScalers on the CPU, at a scale where this model's fp16 backward does not overflow by itself.
    fp16 = Precision(True, "cpu", torch.float16, *(torch.amp.GradScaler("cpu", init_scale=256.0) for _ in "dg"))

    hook = _inf_gradient(next(D.parameters()))
    before, scale = _params(D), fp16.scaler_d.get_scale()
    d_stats = discriminator_step(D, opt_d, loss, real, generate(G, torch.randn(4, 8), fp16), precision=fp16)
    hook.remove()
    assert d_stats["amp_skipped_d"] == 1.0 and "d_grad_norm" not in d_stats
    assert all(torch.equal(p, before[name]) for name, p in D.named_parameters())  # Adam did not step
    assert fp16.scaler_d.get_scale() == scale / 2

    hook = _inf_gradient(next(G.parameters()))
    before = _params(G)
    g_stats = generator_step(G, D, opt_g, loss, generate(G, torch.randn(4, 8), fp16), precision=fp16)
    hook.remove()
    assert g_stats["amp_skipped_g"] == 1.0 and "g_grad_norm" not in g_stats
    assert all(torch.equal(p, before[name]) for name, p in G.named_parameters())
    assert all(math.isfinite(value) for value in {**d_stats, **g_stats}.values())
    assert diagnose([{"step": 1, **d_stats, **g_stats}]) == []

    before = _params(D)
    applied = discriminator_step(D, opt_d, loss, real, generate(G, torch.randn(4, 8), fp16), precision=fp16)
    assert applied["amp_skipped_d"] == 0.0 and math.isfinite(applied["d_grad_norm"])
    assert _max_change(before, D) > 0  # without the overflow the next update is applied


def test_inf_gradients_without_an_enabled_scaler_are_still_divergence():
    cfg = tiny_config()
    torch.manual_seed(0)
    G, D = build_models(cfg)
    _, opt_d = make_optimizers(cfg, G, D)
    hook = _inf_gradient(next(D.parameters()))
    stats = discriminator_step(D, opt_d, build_loss(cfg.loss), torch.rand(4, 1, 32, 32), generate(G, torch.randn(4, 8)))
    hook.remove()
    assert stats["amp_skipped_d"] == 0.0 and stats["d_grad_norm"] == math.inf
    (found,) = diagnose([{"step": 1, **stats, "g_loss": 1.0}])
    assert found.name == "divergence" and found.evidence == {"d_grad_norm_finite": 0.0}


# --- R1 through the augmentation --------------------------------------------------------------------------------


def _r1_setup():
    cfg = tiny_config()
    torch.manual_seed(0)
    G, D = build_models(cfg)
    _, opt_d = make_optimizers(cfg, G, D)
    noise = torch.Generator().manual_seed(1)
    real, fake = torch.rand(4, 1, 32, 32, generator=noise) * 2 - 1, torch.rand(4, 1, 32, 32, generator=noise) * 2 - 1
    return D, opt_d, build_loss(cfg.loss), real, fake


def test_r1_through_an_identity_augmentation_is_r1_without_one():
    penalties = []
    for augment in (None, lambda x: translation(x, ratio=0.0)):  # a gather that moves no pixel
        D, opt_d, loss, real, fake = _r1_setup()
        penalties.append(discriminator_step(D, opt_d, loss, real, fake, augment=augment, r1_weight=1.0)["r1_penalty"])
    assert penalties[0] > 0 and penalties[1] == pytest.approx(penalties[0], rel=1e-6)


def test_r1_differentiates_through_the_cutout_that_made_ds_real_batch():
    """The step's R1 is the penalty of x ↦ D(cutout(x)) w.r.t. the un-augmented reals, with the cutout D scored."""
    D, opt_d, loss, real, fake = _r1_setup()
    leaf = real.clone().requires_grad_(True)
    torch.manual_seed(3)
    seen = cutout(leaf)  # the step's first draw: the cutout of the real batch
    through = r1_penalty(D, leaf, 1.0, seen=seen).item()
    on_seen = r1_penalty(D, seen, 1.0).item()  # the augmented batch taken as a leaf: the blank square penalised too
    torch.manual_seed(3)
    stats = discriminator_step(D, opt_d, loss, real, fake, augment=Augment(ops=(cutout,), p=1.0), r1_weight=1.0)
    assert stats["r1_penalty"] == pytest.approx(through, rel=1e-5)
    assert through < 0.95 * on_seen
