"""Face detection and square face crops with facenet-pytorch's MTCNN (Zhang et al. 2016).

The facenet-pytorch wheel ships the MTCNN weights, so nothing is downloaded. Its pins are stale
(torch<2.3, numpy<2): install it with ``pip install --no-deps facenet-pytorch==2.6.0`` (make does).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np
import torch

from gans.errors import Rejected

MIN_FACE_SIZE = 20
"""Smallest face MTCNN looks for, in pixels (facenet-pytorch's default); smaller images cannot hold one."""

BATCH_PIXELS = 16_000_000
"""Most pixels sent through MTCNN in one call (its pyramid keeps float copies of the whole batch)."""


@functools.lru_cache(maxsize=2)
def _detector(device: str):
    from facenet_pytorch import MTCNN

    return MTCNN(min_face_size=MIN_FACE_SIZE, keep_all=True, device=device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def as_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """H×W or H×W×C, uint8 or float in [0, 1] → H×W×3 uint8 (what MTCNN expects)."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def detect(images: list[np.ndarray], device: Optional[str] = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes [K, 4] as x1, y1, x2, y2; probabilities [K]) per image.

    Images of one size are detected together, ``BATCH_PIXELS`` at most per call (a 12 MP photo goes alone).
    Batched boxes match one-at-a-time ones to ~1e-4 px, so a crop may rarely move by a pixel with the batch.
    Images smaller than ``MIN_FACE_SIZE`` get no detections (MTCNN's image pyramid would be empty).
    """
    detector = _detector(device or default_device())
    rgb = [as_rgb_uint8(image) for image in images]
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros((0, 4)), np.zeros(0))] * len(rgb)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(rgb):
        if min(image.shape[:2]) >= MIN_FACE_SIZE:
            by_shape.setdefault(image.shape, []).append(index)
    for shape, same_size in by_shape.items():
        per_call = max(1, BATCH_PIXELS // (shape[0] * shape[1]))
        for start in range(0, len(same_size), per_call):
            indices = same_size[start : start + per_call]
            boxes, probs = detector.detect(np.stack([rgb[i] for i in indices]))
            for i, box, prob in zip(indices, boxes, probs, strict=True):
                if box is not None:
                    results[i] = (np.asarray(box, dtype=float), np.asarray(prob, dtype=float))
    return results


def square_box(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """(top, left, side) of the square centred on ``box`` whose side is its longer edge × (1 + margin)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side_px = max(1, int(math.ceil(side)))
    return int(round(cy - side_px / 2)), int(round(cx - side_px / 2)), side_px


def crop_square(pixels: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The square [top, top + side) × [left, left + side); parts outside the image are edge-padded."""
    height, width = pixels.shape[:2]
    pad = ((max(0, -top), max(0, top + side - height)), (max(0, -left), max(0, left + side - width)))
    pad += ((0, 0),) * (pixels.ndim - 2)
    padded = np.pad(pixels, pad, mode="edge") if any(p for pair in pad for p in pair) else pixels
    top, left = top + pad[0][0], left + pad[1][0]
    return padded[top : top + side, left : left + side]


def _most_confident(boxes: np.ndarray, probs: np.ndarray, min_prob: float) -> tuple[np.ndarray, float]:
    """The most confident of one image's detections; ``Rejected`` if none reaches ``min_prob``."""
    if len(probs) == 0:
        raise Rejected("no face")
    best = int(np.argmax(probs))
    if probs[best] < min_prob:
        raise Rejected("low confidence")
    return boxes[best], float(probs[best])


def crop_faces(
    images: list[np.ndarray], min_prob: float = 0.9, margin: float = 0.2, device: Optional[str] = None
) -> list[np.ndarray | Rejected]:
    """Per image, a square crop around its most confident face widened by ``margin``, or ``Rejected``.

    Detection runs as one batched call per image size. Images under ``MIN_FACE_SIZE`` are "too small".
    """
    crops: list[np.ndarray | Rejected] = []
    for pixels, detections in zip(images, detect(images, device)):
        if min(pixels.shape[:2]) < MIN_FACE_SIZE:
            crops.append(Rejected("too small"))
            continue
        try:
            box, _ = _most_confident(*detections, min_prob)
        except Rejected as rejected:
            crops.append(rejected)
            continue
        crops.append(crop_square(pixels, *square_box(box, margin)))
    return crops
