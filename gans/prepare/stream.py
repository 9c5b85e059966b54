"""From source images to a prepared dataset: decode, crop, resize, judge duplicates, stream to disk.

``iter_outcomes`` turns a ``DataConfig`` into one ``Outcome`` per source image (in source order, with
``data.workers`` processes or any ordered pool); ``write_prepared_stream`` writes the kept ones into the
format of ``gans.data`` without holding them in memory, with a manifest and preview grids.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gans.atomic import atomic_dir
from gans.config import require_registered
from gans.data import IMAGES_FILE, MANIFEST_FILE, DatasetError, to_unit_range
from gans.errors import Rejected
from gans.prepare.crops import CROPS, center_square
from gans.prepare.sources import SOURCES

PREVIEW_FILE = "preview.png"
PREVIEW_EXAMPLES = 64  # the first kept images, in the preview grid
REJECTED_GRID_FILE = "rejected.png"
REJECTED_EXAMPLES = 8  # per reason, in the rejected-examples grid


def check_source_and_crop(cfg) -> None:
    """``data.source`` and ``data.crop`` name registered entries (``ConfigError`` naming the key otherwise).

    Checked here rather than in ``DataConfig``: only preparation uses them, and the config (which training
    imports) must not import the sources and crops.
    """
    require_registered(SOURCES, cfg.source, "data.source")
    require_registered(CROPS, cfg.crop, "data.crop")


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


@dataclass(frozen=True)
class Outcome:
    """What happened to one source image: a prepared uint8 [C, R, R] image, or the reason it was skipped."""

    name: str
    image: Optional[np.ndarray]
    reason: Optional[str]
    digest: Optional[str]
    preview: Optional[np.ndarray] = None
    """A skipped image that could be decoded, centre-cropped and resized (for the rejected-examples grid)."""


@dataclass
class Tally:
    """Running record of outcomes: counts per outcome, the skipped files, the first kept images, a few per reason."""

    counts: dict[str, int] = field(default_factory=lambda: {"kept": 0})
    rejected: list[dict[str, str]] = field(default_factory=list)
    preview: list[np.ndarray] = field(default_factory=list)
    examples: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> bool:
        """Record ``outcome``; True when its image is kept."""
        if outcome.reason is None:
            self.counts["kept"] += 1
            if len(self.preview) < PREVIEW_EXAMPLES:
                self.preview.append(outcome.image)
            return True
        self.counts[outcome.reason] = self.counts.get(outcome.reason, 0) + 1
        self.rejected.append({"name": outcome.name, "reason": outcome.reason})
        if outcome.preview is not None and len(self.examples.setdefault(outcome.reason, [])) < REJECTED_EXAMPLES:
            self.examples[outcome.reason].append(outcome.preview)
        return False


def _digest(pixels: np.ndarray) -> str:
    """Content hash of decoded pixels (shape and dtype included): equal digests are exact duplicates."""
    return hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()


def process_chunk(raws: list, cfg) -> list[Outcome]:
    """Decode, crop and resize a chunk of images (runs in worker processes), one ``Outcome`` each, in order.

    The crop sees the decoded chunk at once, so MTCNN detects faces in batches. Duplicates are judged
    later, in source order.
    """
    decoded: list[tuple[object, Optional[np.ndarray], Optional[str], Optional[str]]] = []
    for raw in raws:
        try:
            pixels = raw.load(cfg.max_pixels)
            decoded.append((raw, pixels, _digest(pixels), None))
        except Rejected as rejected:
            decoded.append((raw, None, None, rejected.reason))
    usable = [pixels for _, pixels, _, reason in decoded if reason is None]
    squares = CROPS.get(cfg.crop)(usable, cfg)
    if len(squares) != len(usable):
        raise RuntimeError(f"Crop {cfg.crop!r} returned {len(squares)} results for {len(usable)} images.")
    crops = iter(squares)
    outcomes = []
    for raw, pixels, digest, reason in decoded:
        if reason is None:
            square = next(crops)
            if isinstance(square, Rejected):
                reason = square.reason
            elif min(square.shape[:2]) < cfg.min_size:
                reason = "too small"
            else:
                outcomes.append(Outcome(raw.name, to_square_uint8(square, cfg.resolution, cfg.channels), None, digest))
                continue
        preview = None if pixels is None else to_square_uint8(center_square(pixels), cfg.resolution, cfg.channels)
        outcomes.append(Outcome(raw.name, None, reason, digest, preview))
    return outcomes


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _init_worker() -> None:
    torch.set_num_threads(1)  # one core per process: the pool provides the parallelism


def iter_outcomes(cfg, workers: int = 1, progress: bool = True, pool=None) -> Iterator[Outcome]:
    """Outcomes of every source image in source order, ``workers`` processes in parallel.

    Images travel in chunks of ``data.chunk_size`` (the unit of work and of batched face detection).

    ``pool`` may be any object with ``multiprocessing.Pool``'s ordered ``imap`` (e.g. Ray's
    ``ray.util.multiprocessing.Pool``, which spreads the work over a cluster); the caller owns it.
    Exact duplicates (same decoded pixels) keep their first occurrence, so the result does not depend on
    the parallelism: parallel output is byte-identical to serial output.
    """
    check_source_and_crop(cfg)
    raws = SOURCES.get(cfg.source)(cfg)
    seen: set[str] = set()
    bar = tqdm(desc=f"prepare {cfg.source}", unit="img", disable=not progress)
    own_pool = None
    try:
        if pool is None and workers > 1:
            pool = own_pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        chunks = _chunks(raws, cfg.chunk_size)
        work = functools.partial(process_chunk, cfg=cfg)
        processed = pool.imap(work, chunks) if pool is not None else map(work, chunks)
        for outcome in itertools.chain.from_iterable(processed):
            bar.update(1)
            if outcome.digest is not None and outcome.reason is None:
                if outcome.digest in seen:
                    outcome = Outcome(outcome.name, None, "duplicate", outcome.digest, outcome.image)
                seen.add(outcome.digest)
            yield outcome
    finally:
        bar.close()
        if own_pool is not None:
            own_pool.terminate()


def prepare_images(
    cfg, progress: bool = True, workers: int = 1
) -> tuple[np.ndarray, dict[str, int], list[dict[str, str]]]:
    """Prepare ``cfg``'s images in memory (small sets; the prepare stage streams to disk instead).

    Returns uint8 images [N, C, R, R], counts per outcome ("kept" or the reason an image was skipped:
    "unreadable", "corrupt", "too large", "duplicate", "too small", "no face", "low confidence") and
    the skipped files as ``{"name", "reason"}``. Nothing is raised for a bad file.
    """
    tally = Tally()
    kept = [outcome.image for outcome in iter_outcomes(cfg, workers, progress) if tally.add(outcome)]
    if not kept:
        raise DatasetError(
            f"Source {cfg.source!r} with crop {cfg.crop!r} kept no images ({tally.counts}); nothing to train on."
        )
    return np.stack(kept), tally.counts, tally.rejected


NPY_HEADER_BYTES = 128
"""Space reserved for the ``.npy`` header of [N, C, R, R] uint8 images (numpy pads it to 128 bytes for any such shape)."""


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    header = buffer.getvalue()
    if len(header) != NPY_HEADER_BYTES:
        raise DatasetError(f"The .npy header for shape {shape} takes {len(header)} bytes, not {NPY_HEADER_BYTES}.")
    return header


def write_prepared_stream(
    out_dir: str | os.PathLike, outcomes: Iterable[Outcome], manifest: dict[str, Any]
) -> dict[str, Any]:
    """Stream outcomes to ``out_dir`` without holding the images in memory; return the completed manifest.

    Kept images are appended to ``images.npy`` behind a reserved header, written once the count is known.
    Beside it go ``manifest.json``, ``preview.png`` (the first kept images) and ``rejected.png`` (examples
    per reason). Everything happens in a temp dir renamed into place at the end, so a failure leaves nothing.
    """
    with atomic_dir(out_dir) as tmp:
        tally = Tally()
        counts = tally.counts
        digest, shape = hashlib.sha256(), None
        with open(tmp / IMAGES_FILE, "wb") as images:
            images.write(bytes(NPY_HEADER_BYTES))
            for outcome in outcomes:
                if not tally.add(outcome):
                    continue
                if shape is not None and outcome.image.shape != shape:
                    raise DatasetError(f"Image {outcome.name!r} has shape {outcome.image.shape}, the others {shape}.")
                shape = outcome.image.shape
                data = np.ascontiguousarray(outcome.image).tobytes()
                images.write(data)
                digest.update(data)
            if counts["kept"] == 0:
                raise DatasetError(f"No image was kept ({counts}); nothing to train on.")
            images.seek(0)
            images.write(_npy_header((counts["kept"], *shape)))
        manifest = {
            **manifest,
            "count": counts["kept"],
            "counts": counts,
            "shape": list(shape),
            "content_sha256": digest.hexdigest(),
            "rejected": tally.rejected,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        from gans.plots import save_grid, save_labelled_rows

        save_grid(to_unit_range(torch.from_numpy(np.stack(tally.preview))), tmp / PREVIEW_FILE)
        if tally.examples:
            save_labelled_rows(tally.examples, tmp / REJECTED_GRID_FILE)
    return manifest
