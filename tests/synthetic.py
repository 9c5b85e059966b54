"""Procedural colour photos for scale tests and ``bench/scale.py``: a smooth gradient with a few shapes on it.

Image ``i`` of a seed is a pure function of (seed, i), so a folder of N images holds the first N of any larger one,
and no two are alike (every image's gradient, shapes and colours are drawn anew). Written as PNG files, so the
prepare stage decodes real files. Imports only numpy and Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_image(index: int, size: int = 128, seed: int = 0) -> np.ndarray:
    """An H×W×3 uint8 image: a linear colour gradient at a random angle, then 1–4 filled discs or rectangles."""
    rng = np.random.default_rng([seed, index])
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = start + (end - start) * ramp
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.08, 0.3)
        if rng.random() < 0.5:
            inside = (y - cy) ** 2 + (x - cx) ** 2 < radius**2
        else:
            inside = (np.abs(y - cy) < radius) & (np.abs(x - cx) < radius * rng.uniform(0.5, 1.5))
        image[inside] = rng.uniform(0, 255, 3)
    return image.round().astype(np.uint8)


def image_name(index: int) -> str:
    """The file name of image ``index``: zero-padded, so sorted names are in index order."""
    return f"{index:07d}.png"


def write_synthetic_folder(folder: str | os.PathLike, count: int, size: int = 128, seed: int = 0) -> Path:
    """Make ``folder`` hold images 0 … count − 1 as PNG files; those already there are kept (not rewritten)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / image_name(index)
        if path.is_file():
            continue
        partial = path.with_suffix(".tmp")
        Image.fromarray(synthetic_image(index, size, seed)).save(partial, format="PNG")
        partial.replace(path)
    return folder
