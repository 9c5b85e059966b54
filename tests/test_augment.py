"""DiffAugment ops, the per-image probability, ADA's controller, and augmentation inside the loop."""

from __future__ import annotations

import pytest
import torch

from gans import checkpoint
from gans.augment import AUGMENTATIONS, Augment, color, cutout, translation
from gans.config import AugmentConfig, ConfigError
from gans.loop import fit
from tests.helpers import tiny_config


def _images(n=6, side=8, channels=1, seed=0):
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", ["color", "translation", "cutout"])
def test_each_op_keeps_the_shape_and_passes_gradients_to_its_input(name):
    x = _images(channels=3).requires_grad_(True)
    out = AUGMENTATIONS.get(name)(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0  # differentiable: G learns through the transform


def test_translation_shifts_whole_pixels_and_fills_with_zero():
    x = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    out = translation(x)
    for image in out[:, 0]:
        # Some shift (dy, dx) in [-1, 1] (0.125 × 8 px) reproduces the image exactly.
        matches = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                expected = torch.zeros(8, 8)
                src = x[0, 0, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
                expected[max(0, dy) : 8 - max(0, -dy), max(0, dx) : 8 - max(0, -dx)] = src
                matches.append(torch.equal(image, expected))
        assert sum(matches) == 1


def test_cutout_zeroes_one_square_of_half_the_side():
    out = cutout(torch.ones(64, 1, 8, 8))
    zeroed = (out == 0).flatten(1).sum(1)
    assert zeroed.max() == 16 and zeroed.min() >= 4  # a 4×4 square, clipped at the borders
    assert ((out == 0) | (out == 1)).all()


def test_color_on_one_channel_shifts_brightness_and_scales_contrast_only():
    x = _images(n=256)
    out = color(x)
    # On one channel saturation is a no-op, so the result is an affine map of each image.
    for before, after in zip(x[:8], out[:8]):
        slope, intercept = torch.linalg.lstsq(
            torch.stack([before.flatten(), torch.ones(64)], 1), after.flatten()[:, None]
        ).solution
        assert torch.allclose(before * slope + intercept, after, atol=1e-5)
        assert 0.5 - 1e-5 <= slope <= 1.5 + 1e-5


def test_probability_zero_is_the_identity_and_draws_nothing_and_one_half_changes_about_half():
    x = _images(n=400)
    off = Augment(ops=(translation, cutout), p=0.0)
    state = torch.get_rng_state()
    assert off(x) is x and torch.equal(torch.get_rng_state(), state)
    half = Augment(ops=(cutout,), p=0.5)
    changed = (half(x) != x).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.6


def test_the_adaptive_controller_moves_p_towards_the_target_and_stays_in_bounds():
    ada = Augment.create(AugmentConfig(policy=("translation",), adaptive=True, target=0.6, ada_kimg=1.0))
    assert ada.p == 0.0  # adaptive starts without augmentation
    ada.adapt(real_sign=0.9, real_images=250)  # D overfits: more augmentation, by 250 / 1000
    assert ada.p == pytest.approx(0.25)
    ada.adapt(real_sign=0.2, real_images=100)
    assert ada.p == pytest.approx(0.15)
    ada.adapt(real_sign=1.0, real_images=10_000)
    assert ada.p == 1.0
    fixed = Augment.create(AugmentConfig(policy=("translation",), p=0.3))
    fixed.adapt(real_sign=1.0, real_images=10_000)
    assert fixed.p == 0.3  # a fixed probability does not move


def test_unknown_policy_names_are_refused_with_the_allowed_values():
    with pytest.raises(
        ConfigError, match=r"^augment\.policy='flip' is not valid; allowed values: color, cutout, translation\.$"
    ):
        Augment.create(AugmentConfig(policy=("flip",)))


def test_adaptive_augmentation_in_the_loop_logs_p_and_resumes_bit_identically(tiny_dataset, tmp_path):
    sections = {
        "augment": {"policy": ["color", "translation", "cutout"], "adaptive": True, "target": 0.0, "ada_kimg": 0.05},
        "loss": {"r1_weight": 1.0},
    }
    full = fit(tiny_config(train={"steps": 8}, **sections), tiny_dataset, work_dir=tmp_path / "full")
    # Each log step (2 steps × 4 images) moves p by 8 / 50 towards more augmentation when D's real logits
    # were mostly positive (above the target 0), and back otherwise.
    expected, p = [], 0.0
    for row in full["history"]:
        p = min(max(p + (0.16 if row["d_real_sign"] > 0 else -0.16 if row["d_real_sign"] < 0 else 0.0), 0.0), 1.0)
        expected.append(p)
    ps = [row["augment_p"] for row in full["history"]]
    assert ps == pytest.approx(expected) and len(set(ps)) > 1 and full["augment_p"] == ps[-1]
    assert all("r1_penalty" in row and row["r1_penalty"] >= 0 for row in full["history"])

    fit(tiny_config(train={"steps": 4}, **sections), tiny_dataset, work_dir=tmp_path / "half")
    half = checkpoint.load(next((tmp_path / "half").glob("snapshot-*")))
    resumed = fit(tiny_config(train={"steps": 8}, **sections), tiny_dataset, work_dir=tmp_path / "resumed", resume=half)
    assert resumed["augment_p"] == full["augment_p"]
    assert all(torch.equal(resumed["G"][key], full["G"][key]) for key in full["G"])


def test_adaptive_augmentation_is_refused_with_a_loss_without_a_decision_boundary():
    from gans.loop import check_config

    with pytest.raises(
        ConfigError,
        match=r"^augment\.adaptive=true needs a loss with a decision boundary and loss\.name='wgan-gp' has none "
        r"\(its critic's offset is arbitrary\): use a fixed augment\.p or another loss\.$",
    ):
        check_config(tiny_config(loss={"name": "wgan-gp"}, augment={"adaptive": True}))
    check_config(tiny_config(loss={"name": "wgan-gp"}, augment={"p": 0.5}))  # a fixed p is fine
    check_config(tiny_config(loss={"name": "lsgan"}, augment={"adaptive": True}))  # lsgan's boundary is 0.5
