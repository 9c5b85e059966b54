"""Shared fixtures: a tiny prepared dataset on disk, LFW photos for face detection, and 8 px LFW faces with their
reference statistics for the sweeps (helpers: tests/helpers.py)."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A tiny test run reports a snapshot every few steps, and each report (and the run's end) waits for Ray Train's
# controller to poll the workers: every 1 s in the project (pipeline/ray_runtime/cluster.py, where a long run's
# steps/s matter more), every 0.2 s here, in this process and the stages, jobs and clusters it starts.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

from gans.data import PreparedDataset  # noqa: E402
from tests.helpers import tiny_config, write_tiny_dataset  # noqa: E402, F401 (tiny_config kept importable from here)


@functools.lru_cache(maxsize=1)
def _lfw_subset() -> np.ndarray:
    from skimage.data import lfw_subset

    return lfw_subset()


def lfw_photo(index: int, size: int = 100) -> Image.Image:
    """scikit-image's LFW image ``index`` (0–99 faces, 100–199 non-faces), grayscale, bicubic-upscaled to ``size`` px."""
    return Image.fromarray((_lfw_subset()[index] * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> tuple[str, str]:
    """The 100 LFW faces at 8 px, prepared, and their reference statistics: (prepared dir, reference file).

    One copy for the whole session (the sweeps only read it): its reference costs 100 Inception images."""
    from gans.data import write_prepared
    from gans.metrics import features_of_images, make_extractor, reference_statistics, save_reference

    root = tmp_path_factory.mktemp("faces")
    images = np.stack([np.asarray(lfw_photo(i, 8))[None] for i in range(100)]).astype(np.uint8)
    prepared = write_prepared(root / "prepared", images, {"count": 100})
    reference = root / "reference.npz"
    save_reference(
        reference, reference_statistics(features_of_images(torch.from_numpy(images), make_extractor(), verbose=False))
    )
    return str(prepared), str(reference)


@pytest.fixture
def tiny_dataset(tmp_path) -> PreparedDataset:
    """24 random grayscale 32×32 uint8 images on disk (``write_tiny_dataset``)."""
    return write_tiny_dataset(tmp_path)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
