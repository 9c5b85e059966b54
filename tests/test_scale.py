"""Costs that must not grow with the data (streamed reference statistics, chunked reads, per-batch indices), and a
64 px colour run of the stages on synthetic photos (prepare → reference → train → evaluate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch_fidelity.metric_fid import fid_features_to_statistics

from gans import data, metrics
from gans.cache import CACHE_ENV
from gans.data import PreparedDataset, write_prepared
from tests.helpers import FIXED_PRECISION, REPO
from tests.synthetic import write_synthetic_folder


def _features(n: int, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Rows with an offset mean and unequal scales, as Inception features have (non-negative, correlated)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / math.sqrt(d)
    return torch.from_numpy((np.abs(rng.normal(size=(n, d))) @ mixing + 3.0).astype(np.float32))


def _streamed(features: torch.Tensor, chunk: int, max_kept: int, block: int = 512) -> dict:
    statistics = metrics.StreamingStatistics(features.shape[0], max_kept, seed=0, block=block)
    for part in features.split(chunk):
        statistics.add(part)
    return statistics.result()


@pytest.mark.parametrize("chunk, block", [(1, 1), (7, 10), (50, 64), (50, 512), (1000, 512)])
def test_streamed_statistics_are_torch_fidelitys(chunk, block):
    features = _features(301)
    streamed = _streamed(features, chunk, max_kept=10_000, block=block)
    exact = fid_features_to_statistics(features.double())
    assert np.abs(streamed["mu"] - exact["mu"]).max() <= 1e-10 * np.abs(exact["mu"]).max()
    assert np.abs(streamed["sigma"] - exact["sigma"]).max() <= 1e-10 * np.abs(exact["sigma"]).max()
    assert np.array_equal(streamed["sigma"], streamed["sigma"].T)
    # N ≤ the limit: every row, in order (consumers read len(kid_features) == n as "the whole real set").
    assert streamed["n"] == 301 and np.array_equal(streamed["kid_features"], features.numpy())


@pytest.mark.parametrize("chunk", [3, 64])
def test_streamed_subsample_is_the_documented_choice_above_the_limit(chunk):
    features = _features(200, d=8)
    features[:, 0] = torch.arange(200)  # each row identifiable
    streamed = _streamed(features, chunk, max_kept=37)
    chosen = np.random.default_rng(0).choice(200, 37, replace=False)  # the documented choice, in its order
    kept = streamed["kid_features"]
    assert kept.shape == (37, 8) and len(set(kept[:, 0].tolist())) == 37
    assert np.array_equal(kept, features.numpy()[chosen])


def test_streaming_refuses_too_few_or_too_many_rows():
    with pytest.raises(metrics.MetricsError):
        metrics.StreamingStatistics(1)
    statistics = metrics.StreamingStatistics(4)
    statistics.add(torch.zeros(3, 2))
    with pytest.raises(metrics.MetricsError):
        statistics.result()
    with pytest.raises(metrics.MetricsError):
        statistics.add(torch.zeros(2, 2))


def test_chunks_read_every_image_in_order_and_batches_only_their_rows(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(23, 3, 8, 8), dtype=np.uint8)
    dataset = PreparedDataset(write_prepared(tmp_path / "prepared", images, {"count": 23}))
    chunks = list(dataset.chunks(5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert all(c.dtype == torch.uint8 for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), images)
    assert np.array_equal(dataset.uint8([4, 0, 22]).numpy(), images[[4, 0, 22]])
    assert np.array_equal(dataset.uint8().numpy(), images)


def test_batches_of_one_epoch_draw_its_permutation_once():
    """A batch costs O(batch size): the epoch's permutation of all n indices is drawn once, not per batch."""
    data.epoch_permutation.cache_clear()
    n, batch = 1000, 10
    for b in range(n // batch):
        indices = data.batch_indices(b, n, batch, seed=5)
        expected = np.random.default_rng([5, 0]).permutation(n)[b * batch : (b + 1) * batch]
        assert np.array_equal(indices, expected)
    assert data.epoch_permutation.cache_info().misses == 1


def test_streamed_reference_statistics_of_image_chunks(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(11, 3, 16, 16), dtype=np.uint8)
    dataset = PreparedDataset(write_prepared(tmp_path / "prepared", images, {"count": 11}))

    def extractor(batch: torch.Tensor) -> torch.Tensor:  # a stand-in for Inception: per-channel means and maxima
        flat = batch.float().flatten(2)
        return torch.cat([flat.mean(2), flat.amax(2)], dim=1)

    streamed = metrics.streamed_reference_statistics(dataset.chunks(4), len(dataset), extractor, verbose=False)
    in_memory = metrics.reference_statistics(extractor(torch.from_numpy(images)))
    assert streamed["n"] == 11 and np.array_equal(streamed["kid_features"], in_memory["kid_features"])
    np.testing.assert_allclose(streamed["sigma"], in_memory["sigma"], rtol=1e-10, atol=1e-10)


# The stages on 64 px colour photos ----------------------------------------------------------------------------------

COUNT = 100


def _params(folder: Path) -> dict:
    """params.yaml for a 64 px colour run in seconds: tiny models, a few steps, few generated images."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {
        "data": {"source": "folder", "path": str(folder), "crop": "center", "resolution": 64, "channels": 3},
        "model": {"g_width": 8, "d_width": 8, "z_dim": 16},
        "train": {
            "steps": 6,
            "batch_size": 8,
            "log_every": 3,
            "snapshot_every": 6,
            "n_fixed": 16,
            "fid_every": 0,
            **FIXED_PRECISION,
        },
        "eval": {
            "n_fake": 60,  # FID∞ fits FID over generated-set sizes from 50 up
            "batch_size": 20,
            "kid_subsets": 5,
            "kid_subset_size": 20,
            "grid_size": 16,
            "fid_draws": 1,
            "bootstrap": 20,
            "prc_subsets": 2,
            "floor_splits": 2,
            "standing_samples": 64,
        },
        "sweep": {"enabled": False},
    }
    for section, values in overrides.items():
        params[section].update(values)
    return params


@pytest.mark.slow  # four stages, Inception three times: tens of seconds
def test_stages_on_64px_colour_photos(tmp_path, monkeypatch):
    """prepare → reference → train's loop → evaluate, each stage's ``main`` in this process (the train stage's
    Ray path is tests/test_pipeline_e2e.py's) on synthetic 128 px colour photos cropped and resized to 64 px."""
    from gans import checkpoint
    from gans.loop import fit
    from pipeline import evaluate, prepare, reference
    from pipeline.params import load_params

    folder = write_synthetic_folder(tmp_path / "photos", COUNT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(folder), sort_keys=False))
    prepare.main()
    reference.main()
    params = load_params()
    state = fit(params.gan, PreparedDataset(params.paths.prepared), work_dir=tmp_path / "snapshots")
    checkpoint.save(state, Path(params.paths.train) / checkpoint.FILENAME)
    evaluate.main()

    manifest = json.loads(Path(params.paths.prepared, "manifest.json").read_text())
    assert manifest["count"] == COUNT and manifest["shape"] == [3, 64, 64]
    stored = metrics.load_reference(params.paths.reference)
    assert stored["n"] == COUNT and len(stored["kid_features"]) == COUNT and stored["meta"]["n_real"] == COUNT
    evaluation = json.loads(Path(params.paths.eval_metrics).read_text())
    assert math.isfinite(evaluation["fid"]) and evaluation["fid"] > 0
    assert evaluation["meta"]["n_real"] == COUNT and evaluation["meta"]["n_fake"] == 60
