"""Sources: embedded sets, folders and zips, and a corpus of bad files — each gets a reason, none crashes."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gans.config import DataConfig
from gans.prepare.sources import SOURCES, SourceError, decode
from gans.prepare.stream import prepare_images
from tests.conftest import lfw_photo


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _photo(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _face(index: int, size: int = 100) -> Image.Image:
    return lfw_photo(index, size).convert("RGB")


def _top_white_bottom_black() -> Image.Image:
    pixels = np.zeros((40, 40), dtype=np.uint8)
    pixels[:20] = 255
    return Image.fromarray(pixels)


def _animated_gif(first: Image.Image) -> bytes:
    blue = Image.new("RGB", first.size, (0, 0, 255))
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    return buffer.getvalue()


def _exif_rotated(upright: Image.Image) -> bytes:
    """``upright`` stored rotated 90° with EXIF orientation 6 ("rotate 90 CW to display"), as cameras write."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(upright.transpose(Image.Transpose.ROTATE_90).convert("RGB"), exif=exif.tobytes())


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(220)
    return rgba


CORPUS: dict[str, tuple[bytes, str]] = {}


def _corpus() -> dict[str, tuple[bytes, str]]:
    """File name → (bytes, expected outcome) for a face-cropping run (``_cfg``); each photo is a different face."""
    if CORPUS:
        return CORPUS
    good = _jpeg(_face(0))
    sixteen = Image.fromarray(np.asarray(lfw_photo(3)).astype(np.uint16) * 257)
    CORPUS.update(
        {
            "a-good.jpg": (good, "kept"),  # sorts before its copy, so the copy is the duplicate
            "dup/copy-of-good.jpg": (good, "duplicate"),
            "zero-bytes.jpg": (b"", "unreadable"),
            "text-named.jpg": (b"this is not an image\n" * 10, "unreadable"),
            "truncated.jpg": (_jpeg(_face(1))[:600], "corrupt"),
            "alpha.png": (_png(_with_alpha(_face(2))), "kept"),
            "palette.png": (_png(_face(5).convert("P")), "kept"),
            "sixteen-bit.png": (_png(sixteen), "kept"),
            "cmyk.jpg": (_jpeg(_face(6).convert("CMYK")), "kept"),
            "gray.png": (_png(lfw_photo(7)), "kept"),
            "rotated.jpg": (_exif_rotated(_face(8)), "kept"),
            "animated.gif": (_animated_gif(_face(10)), "kept"),
            "bomb.png": (_png(Image.new("1", (10_000, 6_000))), "too large"),
            "small.png": (_png(_face(11, size=48)), "too small"),  # its face crop is under min_size
            "tiny.png": (_png(_photo(5, size=8)), "too small"),  # under MTCNN's smallest face
            "no-face.jpg": (_jpeg(lfw_photo(100).convert("RGB")), "no face"),
            "unsure-face.jpg": (_jpeg(_face(4)), "low confidence"),  # MTCNN is only ~98% sure of this one
            "notes.txt": (b"ignored: not an image suffix", None),
        }
    )
    return CORPUS


def _write_folder(root: Path) -> Path:
    for name, (data, _) in _corpus().items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # A non-UTF-8 file name (Latin-1 "café").
    with open(os.path.join(os.fsencode(root), b"caf\xe9.png"), "wb") as f:
        f.write(_png(_face(12)))
    return root


def _cfg(source: str, path: Path, **kwargs) -> DataConfig:
    """Face crops as for CelebA-style photos: MTCNN, 99% sure, crops of at least 64 px, 16 px RGB out."""
    settings = dict(crop="mtcnn", min_face_prob=0.99, resolution=16, channels=3, min_size=64, max_pixels=40_000_000)
    return DataConfig(source=source, path=str(path), **{**settings, **kwargs})


def test_every_bad_file_gets_its_reason_and_nothing_crashes(tmp_path):
    images, counts, rejected = prepare_images(_cfg("folder", _write_folder(tmp_path / "photos")), progress=False)
    expected = {name: outcome for name, (_, outcome) in _corpus().items() if outcome not in (None, "kept")}
    assert {row["name"]: row["reason"] for row in rejected} == expected
    kept = sum(outcome == "kept" for _, outcome in _corpus().values()) + 1  # + the non-UTF-8 name
    assert counts == {
        "kept": kept,
        "duplicate": 1,
        "unreadable": 2,
        "corrupt": 1,
        "too large": 1,
        "too small": 2,
        "no face": 1,
        "low confidence": 1,
    }
    assert images.shape == (kept, 3, 16, 16)


def test_an_exif_rotated_face_is_found_and_cropped_upright():
    from gans.prepare.sources import RawImage
    from gans.prepare.stream import process_chunk

    upright = _face(8)
    raws = [RawImage("rotated.jpg", data=_exif_rotated(upright)), RawImage("upright.jpg", data=_jpeg(upright))]
    rotated, reference = process_chunk(raws, _cfg("folder", Path("."), resolution=32))
    assert rotated.reason is None and reference.reason is None
    difference = np.abs(rotated.image.astype(int) - reference.image.astype(int)).mean()
    sideways = np.abs(np.rot90(rotated.image, axes=(1, 2)).astype(int) - reference.image.astype(int)).mean()
    assert difference < 2 and sideways > 20  # measured: 0.2 and 57


def test_decoding_is_upright_first_frame_and_flattened():
    rotated = decode(_exif_rotated(_top_white_bottom_black()), max_pixels=10**6)
    assert rotated.shape[:2] == (40, 40)
    gray = rotated if rotated.ndim == 2 else rotated.mean(axis=2)
    assert gray[:15].mean() > 200 and gray[25:].mean() < 50  # top white, bottom black: upright
    gif = decode(_animated_gif(Image.new("RGB", (32, 32), (255, 0, 0))), max_pixels=10**6)
    assert tuple(gif[0, 0]) == (255, 0, 0)  # the first frame
    alpha = decode(_png(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), max_pixels=10**6)
    assert alpha.shape == (4, 4, 3) and alpha.min() == 255  # transparent → white background
    deep = decode(_png(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))), max_pixels=10**6)
    assert deep.dtype == np.uint8 and deep.max() == 255


def test_zip_and_folder_of_the_same_images_give_identical_data(tmp_path):
    folder = _write_folder(tmp_path / "photos")
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, (data, _) in _corpus().items():
            zf.writestr(name, data)
        zf.writestr("caf\u00e9.png", (folder / os.fsdecode(b"caf\xe9.png")).read_bytes())
    from_folder, folder_counts, _ = prepare_images(_cfg("folder", folder), progress=False)
    from_zip, zip_counts, _ = prepare_images(_cfg("zip", archive), progress=False)
    assert folder_counts == zip_counts
    assert np.array_equal(from_folder, from_zip)


def test_missing_or_empty_paths_are_one_sentence_errors(tmp_path):
    with pytest.raises(SourceError, match=r"data.path='.*nowhere' does not exist\."):
        list(SOURCES.get("folder")(_cfg("folder", tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"holds no image files"):
        list(SOURCES.get("folder")(_cfg("folder", tmp_path / "empty")))
    with pytest.raises(SourceError, match=r"needs data.path"):
        list(SOURCES.get("zip")(DataConfig(source="zip")))


@pytest.mark.parametrize("source, count, side", [("mnist-5k", 5000, 28), ("digits", 1797, 8), ("lfw-subset", 100, 25)])
def test_embedded_sources_ship_inside_packages(source, count, side):
    images = list(SOURCES.get(source)(DataConfig(source=source)))
    assert len(images) == count and images[0].pixels.shape[:2] == (side, side)
    assert all(image.reason is None for image in images[:10])


def test_parallel_streamed_output_is_byte_identical_to_serial(tmp_path):
    from gans.data import IMAGES_FILE, content_hash
    from gans.prepare.stream import iter_outcomes, write_prepared_stream

    cfg = _cfg("folder", _write_folder(tmp_path / "photos"))
    in_memory, counts, _ = prepare_images(cfg, progress=False)
    serial = write_prepared_stream(tmp_path / "serial", iter_outcomes(cfg, workers=1, progress=False), {})
    parallel = write_prepared_stream(tmp_path / "parallel", iter_outcomes(cfg, workers=2, progress=False), {})
    assert serial == parallel
    assert serial["counts"] == counts and serial["content_sha256"] == content_hash(in_memory)
    assert (tmp_path / "serial" / IMAGES_FILE).read_bytes() == (tmp_path / "parallel" / IMAGES_FILE).read_bytes()
    # Rejected examples that could be decoded are drawn, one row per reason: duplicate, too small, no face,
    # low confidence (each row 1.3 in at 80 dpi).
    from PIL import Image as PILImage

    grid = PILImage.open(tmp_path / "serial" / "rejected.png")
    assert grid.size[1] == 4 * 104
    assert np.array_equal(np.load(tmp_path / "serial" / IMAGES_FILE), in_memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parallel", "photos", "serial"]  # no temp dirs left


def test_a_stream_that_keeps_nothing_leaves_nothing_behind(tmp_path):
    from gans.data import DatasetError
    from gans.prepare.stream import iter_outcomes, write_prepared_stream

    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"No image was kept \(\{'kept': 0, 'unreadable': 1\}\)"):
        write_prepared_stream(tmp_path / "out", iter_outcomes(_cfg("folder", folder), progress=False), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


@pytest.mark.parametrize(
    "source, what",
    [
        ("celeba", "img_align_celeba.zip"),
        ("mnist", "ubyte"),
        ("cifar10", "cifar-10-python"),
        ("svhn", "train_32x32.mat"),
    ],
)
def test_torchvision_sets_offline_say_what_to_download_and_where(tmp_path, source, what):
    cfg = DataConfig(source=source, path=str(tmp_path / source))
    with pytest.raises(SourceError) as info:
        next(iter(SOURCES.get(source)(cfg)))
    message = str(info.value)
    assert f"{source} is not in {tmp_path / source}" in message and what in message
    assert "data.download: true" in message
    assert not any((tmp_path / source).rglob("*.*"))  # nothing was fetched
