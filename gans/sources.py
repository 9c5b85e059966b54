"""Image sources, registered by name (``data.source``).

A source is a function ``(limit) -> Iterator[RawImage]`` yielding images in a deterministic order.
Pixels are H×W (grayscale) or H×W×3 arrays, either uint8 or floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from gans.registry import Registry

SOURCES: Registry = Registry("data source")


@dataclass(frozen=True)
class RawImage:
    name: str
    pixels: np.ndarray


@SOURCES.register("lfw-subset")
def lfw_subset(limit: Optional[int] = None) -> Iterator[RawImage]:
    """The 100 face crops (25×25, grayscale) of Labeled Faces in the Wild shipped inside scikit-image."""
    from skimage.data import lfw_subset as load

    faces = load()[:100]  # the first 100 are faces, the last 100 are not
    for index, pixels in enumerate(faces[:limit]):
        yield RawImage(f"lfw_subset/{index:03d}", pixels)
