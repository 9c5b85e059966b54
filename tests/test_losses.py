import math

import pytest
import torch

from gans.augment import cutout
from gans.config import LossConfig
from gans.losses import bce_d_loss, bce_g_loss, build_loss, r1_penalty


def test_bce_on_zero_logits_is_log2_per_term():
    zeros = torch.zeros(4)
    assert bce_d_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert bce_g_loss(zeros).item() == pytest.approx(math.log(2))


def test_bce_hand_computed_with_and_without_smoothing():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid

    def bce(logit, target):
        p = sig(torch.tensor(logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    expected = (bce(2.0, 1) + bce(-1.0, 1)) / 2 + (bce(0.5, 0) + bce(-3.0, 0)) / 2
    assert bce_d_loss(real, fake).item() == pytest.approx(float(expected), rel=1e-6)
    smoothed = (bce(2.0, 0.9) + bce(-1.0, 0.9)) / 2 + (bce(0.5, 0) + bce(-3.0, 0)) / 2
    assert bce_d_loss(real, fake, smoothing=0.1).item() == pytest.approx(float(smoothed), rel=1e-6)
    # Non-saturating G loss: -log sigmoid(fake).
    assert bce_g_loss(fake).item() == pytest.approx(float((bce(0.5, 1) + bce(-3.0, 1)) / 2), rel=1e-6)


def test_flipped_pairs_swap_targets():
    real, fake = torch.tensor([3.0, 3.0]), torch.tensor([-3.0, -3.0])
    all_flipped = bce_d_loss(real, fake, flip=torch.tensor([True, True]))
    assert all_flipped.item() == pytest.approx(bce_d_loss(fake, real).item())
    assert all_flipped > bce_d_loss(real, fake)


def test_noisy_labels_flip_at_the_configured_rate():
    loss = build_loss(LossConfig(label_smoothing=0.0, label_flip_prob=0.25))
    real, fake = torch.full((20000,), 20.0), torch.full((20000,), -20.0)
    # Confident, correct logits: each flipped pair costs ≈ 40 nats, unflipped ≈ 0.
    value = loss.d_loss(real, fake, generator=torch.Generator().manual_seed(0)).item()
    assert value / 40 == pytest.approx(0.25, abs=0.02)


def test_r1_through_cutout_is_r1_of_the_seen_batch_without_the_cut_square():
    """∇ₓD(cutout(x)) = mask ⊙ ∇D at the cut-out images: the un-augmented reals get no gradient on the square."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(256, 1)
    )

    def critic(x):
        return net(x).squeeze(1)

    real = torch.randn(6, 1, 8, 8).requires_grad_(True)
    torch.manual_seed(1)
    seen = cutout(real)
    torch.manual_seed(1)
    kept = cutout(torch.ones(6, 1, 8, 8))  # the same squares: 0 on them, 1 elsewhere
    assert (kept == 0).any() and (kept == 1).any()
    at_seen = seen.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(at_seen).sum(), at_seen)
    expected = 0.5 * 2.0 * (grad * kept).flatten(1).pow(2).sum(1).mean()

    through = r1_penalty(critic, real, 2.0, seen=seen)
    assert through.item() == pytest.approx(expected.item(), rel=1e-6)
    assert through.item() < r1_penalty(critic, seen, 2.0).item()  # the leaf version also penalises the square
    through.backward()  # stays in the graph: it trains the critic
    assert net[0].weight.grad.abs().sum() > 0
