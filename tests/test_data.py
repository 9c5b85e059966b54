import json

import numpy as np
import pytest
import torch

from gans.config import DataConfig
from gans.data import DatasetError, PreparedDataset, batch_indices, to_uint8, to_unit_range, write_prepared
from gans.prepare.stream import prepare_images, to_square_uint8


def test_unit_range_contract_round_trips():
    pixels = torch.arange(256, dtype=torch.uint8)
    scaled = to_unit_range(pixels)
    assert scaled.min() == -1 and scaled.max() == 1
    assert torch.equal(to_uint8(scaled), pixels)


def test_lfw_subset_is_prepared_to_the_requested_shape():
    images, counts, _ = prepare_images(DataConfig(resolution=32, channels=3, limit=10), progress=False)
    assert images.shape == (10, 3, 32, 32) and images.dtype == np.uint8
    assert counts == {"kept": 10}
    assert np.array_equal(images[:, 0], images[:, 1])  # gray replicated into RGB
    assert images.std() > 20  # real faces, not a constant


def test_rgb_to_gray_uses_luma():
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    gray = to_square_uint8(red, 8, 1)
    assert gray.shape == (1, 8, 8) and abs(int(gray[0, 4, 4]) - round(0.299 * 255)) <= 1


def test_write_is_atomic_and_readable(tmp_path):
    images = np.full((6, 1, 8, 8), 255, dtype=np.uint8)
    out = write_prepared(tmp_path / "ds", images, {"count": 6})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp dir left behind
    ds = PreparedDataset(out)
    assert len(ds) == 6 and ds.image_shape == (1, 8, 8)
    assert torch.all(ds.batch([0, 5]) == 1.0)
    assert json.loads((out / "manifest.json").read_text()) == {"count": 6}


def test_streamed_images_file_is_the_same_npy_that_numpy_writes(tmp_path):
    from gans.data import IMAGES_FILE
    from gans.prepare.stream import Outcome, write_prepared_stream

    images = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    outcomes = [Outcome(f"{i}", image, None, f"{i}") for i, image in enumerate(images)]
    manifest = write_prepared_stream(tmp_path / "streamed", iter(outcomes), {})
    write_prepared(tmp_path / "saved", images, {})
    assert (tmp_path / "streamed" / IMAGES_FILE).read_bytes() == (tmp_path / "saved" / IMAGES_FILE).read_bytes()
    assert manifest["count"] == 5 and manifest["shape"] == [3, 8, 8]


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="run the prepare stage first"):
        PreparedDataset(tmp_path / "nowhere")


def test_batches_shard_each_epoch_disjointly_and_deterministically():
    n, batch, world = 20, 5, 2
    per_epoch = n // world // batch  # 2 batches per rank per epoch
    epoch0 = [np.concatenate([batch_indices(b, n, batch, 0, r, world) for b in range(per_epoch)]) for r in range(world)]
    assert len(set(epoch0[0]) & set(epoch0[1])) == 0
    assert sorted(np.concatenate(epoch0)) == list(range(n))
    again = batch_indices(1, n, batch, 0, 1, world)
    assert np.array_equal(again, batch_indices(1, n, batch, 0, 1, world))
    next_epoch = np.concatenate([batch_indices(b, n, batch, 0, 0, world) for b in range(per_epoch, 2 * per_epoch)])
    assert not np.array_equal(next_epoch, epoch0[0])  # reshuffled


def test_batches_larger_than_a_shard_wrap_around_epochs():
    indices = batch_indices(0, 6, 8, seed=1)
    assert len(indices) == 8 and set(indices) == set(range(6))
