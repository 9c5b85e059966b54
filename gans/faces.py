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

from gans.crops import Rejected


@functools.lru_cache(maxsize=2)
def _detector(device: str):
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device=device)


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
    """(boxes [K, 4] as x1, y1, x2, y2; probabilities [K]) per image; images of one size are batched."""
    detector = _detector(device or default_device())
    rgb = [as_rgb_uint8(image) for image in images]
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros((0, 4)), np.zeros(0))] * len(rgb)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(rgb):
        by_shape.setdefault(image.shape, []).append(index)
    for indices in by_shape.values():
        batch = np.stack([rgb[i] for i in indices])
        boxes, probs = detector.detect(batch)
        for i, box, prob in zip(indices, boxes, probs):
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


def best_face(pixels: np.ndarray, min_prob: float, device: Optional[str] = None) -> tuple[np.ndarray, float]:
    """The most confident face box and its probability; ``Rejected`` if none reaches ``min_prob``."""
    boxes, probs = detect([pixels], device)[0]
    if len(probs) == 0:
        raise Rejected("no face")
    best = int(np.argmax(probs))
    if probs[best] < min_prob:
        raise Rejected("low confidence")
    return boxes[best], float(probs[best])


def crop_face(pixels: np.ndarray, min_prob: float = 0.9, margin: float = 0.2, device: Optional[str] = None) -> np.ndarray:
    """A square crop around the most confident face, widened by ``margin``."""
    box, _ = best_face(pixels, min_prob, device)
    return crop_square(pixels, *square_box(box, margin))
