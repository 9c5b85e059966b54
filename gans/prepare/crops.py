"""Crop modes, registered by name (``data.crop``): how a square is taken from each image.

A crop is a function ``(images: list of H×W[×C] arrays, cfg: DataConfig) -> list`` that returns, for each
image in order, its square crop or a ``Rejected(reason)`` for an image it cannot use (the prepare stage
counts reasons). Crops see a batch so that face detection runs batched; ``per_image`` lifts a one-image
crop to this form.
"""

from __future__ import annotations

import functools
from typing import Callable, Union

import numpy as np

from gans.errors import Rejected
from gans.registry import Registry

CROPS: Registry = Registry("crop mode")


CropResult = Union[np.ndarray, Rejected]


def per_image(crop_one: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray], object], list[CropResult]]:
    """A batch crop that applies ``crop_one`` to each image independently."""

    @functools.wraps(crop_one)
    def crop(images: list[np.ndarray], cfg=None) -> list[CropResult]:
        results: list[CropResult] = []
        for pixels in images:
            try:
                results.append(crop_one(pixels))
            except Rejected as rejected:
                results.append(rejected)
        return results

    return crop


def center_square(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square (for pre-aligned sets such as CelebA-aligned)."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


def whole(pixels: np.ndarray) -> np.ndarray:
    """The whole image; a non-square image is squeezed to a square by the resize."""
    return pixels


CROPS.register("center")(per_image(center_square))
CROPS.register("none")(per_image(whole))


@CROPS.register("mtcnn")
def mtcnn(images: list[np.ndarray], cfg) -> list[CropResult]:
    """The most confident face found by MTCNN, widened by ``data.margin`` and made square (gans.prepare.faces).

    Detection runs batched (images of one size together) on the GPU when there is one.
    """
    from gans.prepare.faces import crop_faces  # facenet-pytorch loads only when a face crop is asked for

    return crop_faces(images, min_prob=cfg.min_face_prob, margin=cfg.margin)
