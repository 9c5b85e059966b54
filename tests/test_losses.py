import math

import pytest
import torch

from gans.config import LossConfig
from gans.losses import bce_d_loss, bce_g_loss, build_loss


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
