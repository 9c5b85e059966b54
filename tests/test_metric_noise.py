"""FID noise, equal-count precision/recall, the achievable floor and FID∞ against torch-fidelity and brute force."""

from typing import Callable

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from gans import metric_noise, metrics
from gans.metric_noise import (
    MetricNoiseError,
    achievable_floor,
    equal_count_subsets,
    fid_between,
    fid_infinity,
    fid_noise,
    precision_recall_equal,
)

Sampler = Callable[..., np.ndarray]


def _world(seed: int, d: int = 2048, latent: int = 16) -> Sampler:
    """A fixed random smooth map of Gaussian latents to non-negative d-dim features; ``shift`` moves the latents."""
    rng = np.random.default_rng(seed)
    first = rng.normal(size=(latent, 128)) / np.sqrt(latent)
    second = rng.normal(size=(128, d)) / np.sqrt(128)

    def sample(count: int, shift: float = 0.0) -> np.ndarray:
        hidden = np.tanh(rng.normal(size=(count, latent)) @ first + shift)
        return np.maximum(hidden @ second, 0).astype(np.float32)

    return sample


def _reference(real: np.ndarray) -> dict:
    return metrics.reference_statistics(torch.from_numpy(real))


def _torch_fidelity_fid(real: np.ndarray, fake: np.ndarray) -> float:
    statistics = [fid_features_to_statistics(torch.from_numpy(rows).double()) for rows in (real, fake)]
    return fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]


@pytest.mark.parametrize("m, n, d", [(100, 500, 2048), (40, 300, 256), (300, 40, 16), (50, 70, 32)])
def test_fid_between_is_torch_fidelitys_fid(m, n, d):
    """Fewer rows than d on both sides (the m × n nuclear norm), and more (the sides' QR factors first)."""
    sample = _world(m + n, d)
    real, fake = sample(m), sample(n, 0.3)
    assert fid_between(real, fake) == pytest.approx(_torch_fidelity_fid(real, fake), rel=1e-5)
    assert fid_between(torch.from_numpy(real), fake) == fid_between(real, fake)
    with pytest.raises(MetricNoiseError, match="needs at least 2 rows, got 1"):
        fid_between(real, fake[:1])


@pytest.mark.parametrize("m, n, d", [(30, 40, 64), (30, 40, 16)])
def test_reweighted_fids_are_fids_of_the_repeated_rows(m, n, d):
    """Bootstrap counts (rows repeated) and subsample counts (0/1), on the small-matrix and the d × d paths."""
    rng = np.random.default_rng(d)
    real, fake = rng.normal(size=(m, d)), rng.normal(size=(n, d)) + 0.2
    reference = fid_features_to_statistics(torch.from_numpy(real))
    resampled, fixed = metric_noise._ResampledFID(real, fake), metric_noise._FixedRealFID(reference, fake)
    assert (resampled.cross is None, fixed.gram is None) == ((d < 30,) * 2)
    subsample = np.zeros(n, dtype=int)
    subsample[rng.choice(n, 25, replace=False)] = 1
    for fake_counts in (metric_noise._bootstrap_counts(rng, n), subsample):
        real_counts = metric_noise._bootstrap_counts(rng, m)
        repeated_real, repeated_fake = np.repeat(real, real_counts, axis=0), np.repeat(fake, fake_counts, axis=0)
        assert resampled(real_counts, fake_counts) == pytest.approx(fid_between(repeated_real, repeated_fake), rel=1e-7)
        assert fixed(fake_counts) == pytest.approx(metrics.fid(reference, torch.from_numpy(repeated_fake)), rel=1e-7)


def test_fid_noise_is_within_a_factor_2_of_the_spread_over_independent_draws():
    """The bootstrap of one draw of 64 generated rows (real fixed) is within a factor 2 of the standard deviation
    of FID over 10 independent draws (it is 1.2–1.8 × in such worlds); resampling the 64 real rows too adds the
    real set's own noise, so the standard deviation grows."""
    sample = _world(0)
    reference = _reference(sample(64))
    spread = np.std([metrics.fid(reference, torch.from_numpy(sample(64, 0.3))) for _ in range(10)], ddof=1)
    draw = sample(64, 0.3)
    generated = fid_noise(reference, draw, replicates=200, seed=0, resample_real=False)
    assert 0.5 < generated["fid_std"] / spread < 2.0
    both = fid_noise(reference, draw, replicates=200, seed=0)
    assert both["fid_std"] > 1.1 * generated["fid_std"]
    assert (generated["resampled"], both["resampled"], both["replicates"], both["seed"]) == (
        "generated",
        "real and generated",
        200,
        0,
    )
    assert fid_noise(reference, torch.from_numpy(draw), replicates=200, seed=0) == both  # seeded, tensor or array


def test_fid_noise_holds_a_real_subset_fixed():
    """``kid_features`` a subset of the real set (n > its rows): the real statistics stay fixed; forcing is refused."""
    sample = _world(1, d=64)
    reference = {**_reference(sample(40)), "n": 50_000}
    assert fid_noise(reference, sample(30), replicates=20)["resampled"] == "generated"
    with pytest.raises(MetricNoiseError, match="kid_features holds 40 of the 50000 real images"):
        fid_noise(reference, sample(30), replicates=20, resample_real=True)
    with pytest.raises(MetricNoiseError, match="at least 2 replicates"):
        fid_noise(reference, sample(30), replicates=1)


def test_equal_counts_give_torch_fidelitys_numbers_and_unequal_counts_their_mean_over_subsamples():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 16)).astype(np.float32), rng.normal(size=(60, 16)).astype(np.float32) + 0.3
    reference = {"kid_features": real, "n": 60}

    def torch_fidelity(fake_rows: np.ndarray, real_rows: np.ndarray) -> dict:
        return prc_features_to_metric(
            torch.from_numpy(fake_rows),
            torch.from_numpy(real_rows),
            prc_neighborhood=3,
            prc_batch_size=10000,
            save_cpu_ram=False,
            verbose=False,
        )

    equal = precision_recall_equal(reference, fake, subsets=7)
    expected = torch_fidelity(fake, real)
    assert (equal["precision"], equal["recall"]) == (expected["precision"], expected["recall"])
    assert (equal["precision_std"], equal["recall_std"], equal["prc_count"], equal["prc_subsets"]) == (0, 0, 60, 1)

    more_fake = np.concatenate([fake, rng.normal(size=(90, 16)).astype(np.float32)])
    for features, real_rows, fake_rows in ((more_fake, real, more_fake), (fake[:25], real, fake[:25])):
        scores = precision_recall_equal({"kid_features": real_rows, "n": len(real_rows)}, features, subsets=5, seed=3)
        subsets = equal_count_subsets(len(fake_rows), len(real_rows), subsets=5, seed=3)
        by_subset = [torch_fidelity(fake_rows[f], real_rows[r]) for f, r in subsets]
        assert scores["precision"] == pytest.approx(np.mean([s["precision"] for s in by_subset]), abs=1e-12)
        assert scores["recall"] == pytest.approx(np.mean([s["recall"] for s in by_subset]), abs=1e-12)
        assert scores["recall_std"] == pytest.approx(np.std([s["recall"] for s in by_subset]), abs=1e-12)
        assert scores["prc_count"] == min(len(fake_rows), len(real_rows)) and scores["prc_subsets"] == 5
        assert all(len(f) == len(r) == scores["prc_count"] and len(set(f)) == len(f) for f, r in subsets)


def test_equal_counts_remove_the_asymmetry_of_1000_generated_against_50_real():
    """Generated and real drawn from one 256-d Gaussian: at equal counts precision and recall are exchangeable
    (equal in expectation); 1000 generated against 50 real give precision above recall in every seed."""
    equal_gaps, raw_gaps = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        real, fake = (rng.normal(size=(count, 256)).astype(np.float32) for count in (50, 1000))
        reference = {"kid_features": real, "n": 50}
        equal = precision_recall_equal(reference, fake, subsets=10, seed=seed)
        raw = metrics.precision_recall(reference, torch.from_numpy(fake))
        equal_gaps.append(equal["precision"] - equal["recall"])
        raw_gaps.append(raw["precision"] - raw["recall"])
    assert min(raw_gaps) > 0.05 and np.mean(raw_gaps) > 0.15  # 0.11 to 0.26
    assert max(abs(gap) for gap in equal_gaps) < 0.15 and abs(np.mean(equal_gaps)) < 0.05  # −0.08 to 0.03


def test_the_floor_is_what_a_sample_of_the_data_scores_and_a_shifted_generator_scores_above_it():
    """Two halves of 50 of 100 real rows against 50 of 500 rows of the same world: FID within 2 combined standard
    deviations (over 20 splits); against 50 rows of a shifted world, more than 4 above."""
    sample = _world(2, d=256)
    reference = {"kid_features": sample(100), "n": 100}
    same, shifted = (achievable_floor(reference, sample(500, shift), splits=20, seed=0) for shift in (0.0, 0.5))
    assert same["floor_size"] == 50 and same["floor_splits"] == 20
    assert same["fid_real_halves"] == shifted["fid_real_halves"]  # the floor depends on the real set and seed only

    def excess(scores: dict) -> float:
        combined = np.hypot(scores["fid_real_halves_std"], scores["fid_generated_vs_half_std"])
        return (scores["fid_generated_vs_half"] - scores["fid_real_halves"]) / combined

    assert abs(excess(same)) < 2 and excess(shifted) > 4
    assert abs(same["kid_real_halves"]) < 3 * same["kid_real_halves_std"] + 1e-3
    assert shifted["kid_generated_vs_half"] > same["kid_generated_vs_half"] + 5 * same["kid_generated_vs_half_std"]


def test_fid_infinity_recovers_the_fid_of_infinitely_many_samples():
    """Generated N(0.25, I), reference N(0, I) in 64-d: FID∞ = 64 × 0.25² = 4, FID at N rows ≈ 4 + b / N; the
    1000-row FID is biased ~1.2 above, the intercept within 0.6 of 4."""
    d = 64
    reference = {"mu": np.zeros(d), "sigma": np.eye(d)}
    fake = np.random.default_rng(0).normal(size=(1000, d)) + 0.25
    out = fid_infinity(reference, fake, points=15, seed=0)
    full = metrics.fid(reference, torch.from_numpy(fake))
    assert out["fid_infinity"] == pytest.approx(4.0, abs=0.6) and out["fid_infinity"] < full - 0.6
    assert out["fid_infinity_slope"] > 0
    assert out["fid_infinity_sizes"][0] == 200 and out["fid_infinity_sizes"][-1] == 1000
    assert len(out["fid_infinity_sizes"]) == 15
    inverse = 1 / np.array(out["fid_infinity_sizes"])
    assert np.allclose(np.diff(inverse), np.diff(inverse)[0], rtol=0.1)  # evenly spaced in 1/N, up to rounding
