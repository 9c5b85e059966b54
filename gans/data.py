"""The prepared-data format: the [-1, 1] contract, the on-disk layout, and deterministic batching.

On disk a prepared dataset is a directory with ``images.npy`` (uint8, [N, C, R, R], memory-mappable)
and ``manifest.json``. Readers see float images in [-1, 1]: x / 127.5 − 1. Making such a directory from
photos (sources, face crops, the streamed writer) is ``gans.prepare``'s job; training needs only this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from gans.atomic import atomic_dir
from gans.errors import UserError

IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"


class DatasetError(UserError):
    """A prepared dataset is missing or malformed."""


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255] (rounded, clamped)."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def content_hash(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def write_prepared(out_dir: str | os.PathLike, images: np.ndarray, manifest: dict[str, Any]) -> Path:
    """Write in-memory images and a manifest into ``out_dir`` atomically (a sibling temp dir renamed into place)."""
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / IMAGES_FILE, images)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(out_dir)


class PreparedDataset:
    """A prepared dataset opened memory-mapped: ``len(ds)``, ``ds.batch(indices)`` → float [-1, 1]."""

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        images_path = path / IMAGES_FILE
        if not images_path.is_file():
            raise DatasetError(f"No prepared dataset at {path} (missing {IMAGES_FILE}); run the prepare stage first.")
        self.path = path
        self.images = np.load(images_path, mmap_mode="r")
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DatasetError(
                f"{images_path} must hold uint8 images [N, C, H, W], got {self.images.dtype} {self.images.shape}."
            )
        manifest_path = path / MANIFEST_FILE
        self.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def uint8(self, indices: Optional[Iterable[int]] = None) -> torch.Tensor:
        """uint8 images [n, C, R, R] (all of them when ``indices`` is None)."""
        selected = self.images if indices is None else self.images[np.asarray(list(indices))]
        return torch.from_numpy(np.array(selected))

    def batch(self, indices: Iterable[int]) -> torch.Tensor:
        """float images in [-1, 1], [n, C, R, R]."""
        return to_unit_range(self.uint8(indices))


def batch_indices(batch: int, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Indices of the ``batch``-th batch this rank reads: a pure function, so resuming needs no sampler state.

    Each epoch is a permutation of the dataset seeded by (seed, epoch); rank r reads every world_size-th
    element of it (as DistributedSampler does), all ranks the same number per epoch. A rank's batches
    walk through its shards epoch after epoch, so a batch may straddle two epochs.
    """
    per_rank = n // world_size
    if per_rank == 0:
        raise DatasetError(f"{n} images cannot be split over {world_size} workers; use fewer workers.")
    positions = np.arange(batch * batch_size, (batch + 1) * batch_size)
    epochs = positions // per_rank
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        permutation = np.random.default_rng([seed, int(epoch)]).permutation(n)
        shard = permutation[rank::world_size][:per_rank]
        mask = epochs == epoch
        out[mask] = shard[positions[mask] % per_rank]
    return out
