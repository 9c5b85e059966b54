"""MTCNN face detection and square face crops (facenet-pytorch, weights shipped in its wheel)."""

import numpy as np
import pytest
from PIL import Image

from gans.config import DataConfig
from gans.errors import Rejected
from gans.prepare.crops import CROPS
from gans.prepare.faces import crop_faces, crop_square, detect, square_box
from gans.prepare.stream import prepare_images
from tests.conftest import lfw_photo


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


@pytest.mark.parametrize(
    "load, face_region",
    [
        # Hand-checked boxes (x1, y1, x2, y2) around each face, from looking at the photos.
        (lambda: __import__("skimage.data", fromlist=["astronaut"]).astronaut(), (170, 50, 280, 180)),
        (_grace_hopper, (180, 140, 350, 350)),
    ],
    ids=["astronaut", "grace_hopper"],
)
def test_the_crop_is_centred_on_the_face(load, face_region):
    pixels = load()
    boxes, probs = detect([pixels])[0]
    box, prob = boxes[probs.argmax()], probs.max()
    assert prob > 0.99
    top, left, side = square_box(box, margin=0.2)
    cx, cy = left + side / 2, top + side / 2
    x1, y1, x2, y2 = face_region
    assert x1 <= cx <= x2 and y1 <= cy <= y2
    (crop,) = CROPS.get("mtcnn")([pixels], DataConfig(crop="mtcnn"))
    assert crop.shape[0] == crop.shape[1] == side and crop.shape[2] == 3


def _lfw_at_100px(count: int = 200) -> list[np.ndarray]:
    return [np.asarray(lfw_photo(index)) for index in range(count)]


def test_faces_are_found_and_non_faces_are_not():
    images = _lfw_at_100px()  # 100 faces, then 100 non-faces
    confident = [len(probs) > 0 and probs.max() >= 0.9 for _, probs in detect(images)]
    assert sum(confident[:100]) >= 90
    assert sum(confident[100:]) <= 5


@pytest.mark.parametrize("batch_pixels", [16_000_000, 30_000], ids=["one-call-per-size", "three-per-call"])
def test_batched_detection_matches_one_image_at_a_time_and_keeps_order(monkeypatch, batch_pixels):
    monkeypatch.setattr("gans.prepare.faces.BATCH_PIXELS", batch_pixels)
    faces = _lfw_at_100px(12)
    small = [np.asarray(Image.fromarray(face).resize((80, 80), Image.BICUBIC)) for face in faces[:4]]
    images = [faces[0], small[0], *faces[1:8], *small[1:], np.zeros((8, 8, 3), np.uint8)]  # sizes interleaved
    batched = detect(images)
    for image, (boxes, probs) in zip(images, batched):
        alone_boxes, alone_probs = detect([image])[0]
        assert len(probs) == len(alone_probs)
        np.testing.assert_allclose(boxes, alone_boxes, atol=1e-3)
        np.testing.assert_allclose(probs, alone_probs, atol=1e-5)
    assert len(batched[-1][1]) == 0  # under MTCNN's smallest face: nothing, and no crash
    crops = CROPS.get("mtcnn")(images, DataConfig(crop="mtcnn"))
    assert [type(crop).__name__ for crop in crops[-2:]] == ["ndarray", "Rejected"] and crops[-1].reason == "too small"
    assert crops[0].shape[0] > crops[1].shape[0]  # the 100 px face's crop, then the 80 px one's


def test_no_face_is_rejected_with_a_reason():
    flat = np.full((120, 120, 3), 128, dtype=np.uint8)
    (rejected,) = crop_faces([flat], min_prob=0.9)
    assert isinstance(rejected, Rejected) and rejected.reason == "no face"


def test_crop_square_pads_outside_the_image():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    crop = crop_square(image, top=-1, left=2, side=4)
    assert crop.shape == (4, 4)
    assert np.array_equal(crop[1:, :2], image[:3, 2:])  # the part inside the image
    assert np.array_equal(crop[0, :2], image[0, 2:])  # edge-padded above


def test_prepare_counts_rejections_by_reason(monkeypatch):
    from gans.prepare.sources import SOURCES, RawImage

    faces = _lfw_at_100px(4)
    blanks = [np.full((100, 100, 3), value, dtype=np.uint8) for value in (40, 200)]

    def mixed(cfg):
        for index, pixels in enumerate([faces[0], blanks[0], *faces[1:], blanks[1]]):
            yield RawImage(f"mixed/{index}", pixels)

    monkeypatch.setitem(SOURCES._entries, "test-mixed", mixed)
    images, counts, _ = prepare_images(DataConfig(source="test-mixed", crop="mtcnn", resolution=32), progress=False)
    assert counts == {"kept": 4, "no face": 2}
    assert images.shape == (4, 1, 32, 32)
