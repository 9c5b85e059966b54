"""The prepared-data format: the [-1, 1] contract, the on-disk layout, and deterministic batching.

On disk a prepared dataset is a directory with ``images.npy`` (uint8, [N, C, R, R], memory-mappable)
and ``manifest.json``. Readers see float images in [-1, 1]: x / 127.5 − 1. Making such a directory from
photos (sources, face crops, the streamed writer) is ``gans.prepare``'s job; training needs only this module.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

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
        """uint8 images [n, C, R, R]: those at ``indices`` (only their rows are read), or all of them when None."""
        if indices is None:
            return torch.from_numpy(np.array(self.images))
        return torch.from_numpy(np.asarray(self.images[np.asarray(list(indices), dtype=np.int64)]))

    def batch(self, indices: Iterable[int]) -> torch.Tensor:
        """float images in [-1, 1], [n, C, R, R]; only the rows at ``indices`` are read."""
        return to_unit_range(self.uint8(indices))

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """Every image in order, as uint8 tensors of ``size`` images (the last one shorter), one chunk in memory.

        Each chunk is read from the file (``numpy.fromfile``), not through the memory map, so the pages read do
        not stay in this process's resident memory: a pass over N images holds one chunk whatever N is.
        """
        if size < 1:
            raise DatasetError(f"Chunks must hold at least 1 image, got {size}.")
        if not self.images.flags.c_contiguous:  # a Fortran-order file: read through the map
            for start in range(0, len(self), size):
                yield torch.from_numpy(np.array(self.images[start : start + size]))
            return
        per_image = int(np.prod(self.image_shape))
        with open(self.path / IMAGES_FILE, "rb") as file:
            file.seek(self.images.offset)
            for start in range(0, len(self), size):
                count = min(size, len(self) - start)
                rows = np.fromfile(file, dtype=np.uint8, count=count * per_image)  # np.load checked the file's size
                yield torch.from_numpy(rows.reshape(count, *self.image_shape))


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of range(n) seeded by (seed, epoch), read-only.

    Cached (this epoch's and the next, which a batch may straddle into), so a batch costs O(batch size), not O(n).
    """
    permutation = np.random.default_rng([seed, epoch]).permutation(n)
    permutation.flags.writeable = False
    return permutation


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
        shard = epoch_permutation(seed, int(epoch), n)[rank::world_size][:per_rank]
        mask = epochs == epoch
        out[mask] = shard[positions[mask] % per_rank]
    return out
