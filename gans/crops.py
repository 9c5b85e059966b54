"""Crop modes, registered by name (``data.crop``): how a square is taken from each image.

A crop is a function ``(pixels H×W×C uint8 or float, cfg: DataConfig) -> pixels`` returning a square array,
or raising ``Rejected(reason)`` for an image it cannot use (the prepare stage counts reasons).
"""

from __future__ import annotations

import numpy as np

from gans.registry import Registry

CROPS: Registry = Registry("crop mode")


class Rejected(Exception):
    """An image was skipped; ``reason`` is a short label counted in the manifest (e.g. "no face")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@CROPS.register("center")
def center(pixels: np.ndarray, cfg=None) -> np.ndarray:
    """The largest centred square (for pre-aligned sets such as CelebA-aligned)."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


@CROPS.register("none")
def none(pixels: np.ndarray, cfg=None) -> np.ndarray:
    """The whole image; a non-square image is squeezed to a square by the resize."""
    return pixels


@CROPS.register("mtcnn")
def mtcnn(pixels: np.ndarray, cfg) -> np.ndarray:
    """The most confident face found by MTCNN, widened by ``data.margin`` and made square (gans.faces)."""
    from gans.faces import crop_face

    return crop_face(pixels, min_prob=cfg.min_face_prob, margin=cfg.margin)
