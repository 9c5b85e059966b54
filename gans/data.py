"""Prepared datasets: the [-1, 1] contract, the on-disk format, and deterministic batching.

On disk a prepared dataset is a directory with ``images.npy`` (uint8, [N, C, R, R], memory-mappable)
and ``manifest.json``. Readers see float images in [-1, 1]: x / 127.5 − 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"


class DatasetError(RuntimeError):
    """A prepared dataset is missing or malformed."""


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255] (rounded, clamped)."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_square_uint8(pixels: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """Resize a square H×W or H×W×C image (uint8 or float in [0, 1]) to [channels, R, R] uint8, antialiased."""
    image = torch.from_numpy(np.asarray(pixels, dtype=np.float32))
    if pixels.dtype == np.uint8:
        image = image / 255.0
    image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)  # [C, H, W]
    image = image[:3]
    if image.shape[0] == 1 and channels == 3:
        image = image.expand(3, -1, -1)
    elif image.shape[0] == 3 and channels == 1:  # ITU-R 601 luma
        image = (image * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
    image = F.interpolate(image[None], size=(resolution, resolution), mode="bicubic", antialias=True)[0]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def prepare_images(cfg, progress: bool = True) -> tuple[np.ndarray, dict[str, int], list[dict[str, str]]]:
    """Read ``cfg.source``, drop exact duplicates, crop, resize.

    Returns uint8 images [N, C, R, R], counts per outcome ("kept" or the reason an image was skipped:
    "unreadable", "corrupt", "too large", "duplicate", "too small", "no face", "low confidence") and
    the skipped files as ``{"name", "reason"}``. Nothing is raised for a bad file.
    """
    from gans.crops import CROPS, Rejected
    from gans.sources import SOURCES

    crop = CROPS.get(cfg.crop)
    kept: list[np.ndarray] = []
    counts: dict[str, int] = {"kept": 0}
    rejected_files: list[dict[str, str]] = []
    seen: set[str] = set()
    images = SOURCES.get(cfg.source)(cfg)
    for raw in tqdm(images, desc=f"prepare {cfg.source}", unit="img", disable=not progress):
        try:
            if raw.reason is not None:
                raise Rejected(raw.reason)
            digest = hashlib.sha256(f"{raw.pixels.shape}{raw.pixels.dtype}".encode() + raw.pixels.tobytes()).hexdigest()
            if digest in seen:
                raise Rejected("duplicate")
            seen.add(digest)
            square = crop(raw.pixels, cfg)
            if min(square.shape[:2]) < cfg.min_size:
                raise Rejected("too small")
        except Rejected as rejected:
            counts[rejected.reason] = counts.get(rejected.reason, 0) + 1
            rejected_files.append({"name": raw.name, "reason": rejected.reason})
            continue
        kept.append(to_square_uint8(square, cfg.resolution, cfg.channels))
        counts["kept"] += 1
    if not kept:
        raise DatasetError(f"Source {cfg.source!r} with crop {cfg.crop!r} kept no images ({counts}); nothing to train on.")
    return np.stack(kept), counts, rejected_files


def content_hash(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def write_prepared(out_dir: str | os.PathLike, images: np.ndarray, manifest: dict[str, Any]) -> Path:
    """Write images and manifest into ``out_dir`` atomically (a sibling temp dir renamed into place)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        np.save(tmp / IMAGES_FILE, images)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


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
            raise DatasetError(f"{images_path} must hold uint8 images [N, C, H, W], got {self.images.dtype} {self.images.shape}.")
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
