"""Crop modes, registered by name (``data.crop``): how a square is taken from each image.

A crop is a function ``(pixels H×W×C float) -> pixels`` returning a square array.
"""

from __future__ import annotations

import numpy as np

from gans.registry import Registry

CROPS: Registry = Registry("crop mode")


@CROPS.register("center")
def center(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square (for pre-aligned sets such as CelebA-aligned)."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


@CROPS.register("none")
def none(pixels: np.ndarray) -> np.ndarray:
    """The whole image; a non-square image is squeezed to a square by the resize."""
    return pixels
