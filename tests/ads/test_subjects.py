"""What an ad keeps: the product mask (segmented or from alpha) and faces, on real photographs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fitad.ads.config import AdConfig
from fitad.ads.subjects import (SubjectError, detect_faces, face_detector_name, face_mask, person_faces,
                                product_mask, skin_share)

from .conftest import ad_config

# Ground truth read off the photographs (pixel coordinates x, y).
COFFEE_CREMA = (290, 150)          # the coffee in the cup
COFFEE_SAUCER_RIM = (110, 260)     # the saucer's left rim
COFFEE_TABLE = [(15, 385), (585, 15), (20, 20), (585, 390)]   # bare table in the four corners
ASTRONAUT_NOSE = (225, 122)        # between the eyes and the mouth


def _inside(box, point) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= point[0] < x1 and y0 <= point[1] < y1


@pytest.fixture(scope="module")
def coffee_subject(coffee):
    return product_mask(coffee, ad_config())


def test_product_mask_finds_the_cup(coffee, coffee_subject):
    subject = coffee_subject
    assert subject.mask.shape == coffee.shape[:2] and subject.mask.dtype == np.uint8
    assert set(np.unique(subject.mask)) == {0, 255}
    assert subject.backend.startswith("opencv")
    for point in (COFFEE_CREMA, COFFEE_SAUCER_RIM):
        assert subject.mask[point[1], point[0]] == 255
    for point in COFFEE_TABLE:
        assert subject.mask[point[1], point[0]] == 0
    assert 0.25 < (subject.mask > 0).mean() < 0.75
    # the box is the mask's bounding box, and it spans the saucer
    ys, xs = np.nonzero(subject.mask)
    assert subject.boxes == [(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)]
    x0, y0, x1, y1 = subject.boxes[0]
    assert x0 < 120 and x1 > 440 and y0 < 60 and y1 > 330


def test_product_mask_is_deterministic(coffee, coffee_subject):
    for _ in range(2):
        np.testing.assert_array_equal(product_mask(coffee, ad_config()).mask, coffee_subject.mask)


def test_product_mask_default_segmentation_size_agrees(coffee, coffee_subject):
    full = product_mask(coffee, AdConfig(segmenter="opencv"))       # the default 640 px segmentation
    a, b = full.mask > 0, coffee_subject.mask > 0
    assert (a & b).sum() / (a | b).sum() > 0.9


def test_product_mask_from_alpha(coffee):
    alpha = np.zeros(coffee.shape[:2], np.uint8)
    cv2.ellipse(alpha, (300, 200), (150, 110), 0, 0, 360, 255, -1)
    alpha[alpha == 0] = 100                            # half-transparent: below the 128 cut, not kept
    alpha[:5, :5] = 127
    subject = product_mask(coffee, ad_config(), alpha)
    assert subject.backend == "alpha channel"
    np.testing.assert_array_equal(subject.mask, np.where(alpha >= 128, 255, 0))
    assert subject.boxes == [(150, 90, 451, 311)]


@pytest.mark.parametrize("share, message", [(0.005, "no product found"), (0.99, "whole photo")])
def test_product_alpha_too_small_or_everything(coffee, share, message):
    alpha = np.zeros(coffee.shape[:2], np.uint8)
    alpha.reshape(-1)[: int(share * alpha.size)] = 255
    with pytest.raises(SubjectError, match=message) as info:
        product_mask(coffee, ad_config(), alpha, name="product_image")
    assert str(info.value).startswith("product_image:")
    assert isinstance(info.value, ValueError)


def test_no_product_in_a_flat_image():
    flat = np.full((200, 300, 3), (40, 120, 200), np.uint8)
    with pytest.raises(SubjectError, match=r"^image: no product found"):
        product_mask(flat, ad_config())


def test_face_found_on_the_astronaut(astronaut):
    boxes, backend = detect_faces(astronaut, ad_config())
    assert "lbp" in backend
    assert len(boxes) == 1
    box = boxes[0]
    assert _inside(box, ASTRONAUT_NOSE)
    assert 60 <= box[2] - box[0] <= 160 and 60 <= box[3] - box[1] <= 160


@pytest.mark.parametrize("photo", ["chelsea", "rocket", "coffee"])
def test_no_face_in_photos_without_people(photo, request):
    rgb = request.getfixturevalue(photo)
    assert detect_faces(rgb, ad_config())[0] == []
    with pytest.raises(SubjectError, match="no face") as info:
        person_faces(rgb, ad_config(), name="image")
    assert str(info.value).startswith("image:")


def test_two_faces_largest_box_first(astronaut):
    small = cv2.resize(astronaut, (358, 358), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 870, 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[77:435, 512:] = small
    boxes, _ = detect_faces(canvas, ad_config())
    assert len(boxes) == 2
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert areas[0] >= areas[1]
    small_nose = (512 + round(ASTRONAUT_NOSE[0] * 0.7), 77 + round(ASTRONAUT_NOSE[1] * 0.7))
    assert any(_inside(b, ASTRONAUT_NOSE) for b in boxes) and any(_inside(b, small_nose) for b in boxes)


def test_face_mask_geometry():
    box = (100, 80, 200, 200)                         # 100 x 120
    tight = face_mask((300, 300), [box], 0.0)
    assert set(np.unique(tight)) == {0, 255}
    area = (tight > 0).sum()
    assert area == pytest.approx(np.pi * 50 * 60, rel=0.03)   # the box's inscribed ellipse
    grown = face_mask((300, 300), [box], 0.35)
    x0, y0, x1, y1 = box
    assert (grown[y0:y1, x0:x1] == 255).all()          # the whole face box is kept
    assert (grown[tight > 0] == 255).all()
    ys, _ = np.nonzero(grown)
    assert y0 - ys.min() > ys.max() - y1               # grown more upwards (hair) than down
    two = face_mask((300, 300), [box, (10, 10, 40, 40)], 0.0)
    assert two[25, 25] == 255 and two[140, 150] == 255


def test_person_faces_mask_covers_the_face(astronaut):
    subject = person_faces(astronaut, ad_config())
    assert subject.mask.shape == astronaut.shape[:2]
    x0, y0, x1, y1 = subject.boxes[0]
    assert (subject.mask[y0:y1, x0:x1] == 255).all()
    assert subject.mask[ASTRONAUT_NOSE[1], ASTRONAUT_NOSE[0]] == 255
    assert 0.02 < (subject.mask > 0).mean() < 0.2     # the face, not the person
    assert subject.mask[450, 100] == 0 and subject.mask[300, 450] == 0   # suit, helmet


def test_skin_share():
    skin = np.full((40, 40, 3), (224, 172, 140), np.uint8)
    dark_skin = np.full((40, 40, 3), (120, 80, 60), np.uint8)
    blue = np.full((40, 40, 3), (40, 90, 220), np.uint8)
    grey = np.full((40, 40, 3), 128, np.uint8)
    box = (0, 0, 40, 40)
    assert skin_share(skin, box) == 1.0 and skin_share(dark_skin, box) == 1.0
    assert skin_share(blue, box) == 0.0 and skin_share(grey, box) == 0.0
    half = blue.copy()
    half[:, :20] = skin[:, :20]                        # the middle 60 %: columns 8..31, half of them skin
    assert skin_share(half, box) == pytest.approx(0.5)


def test_face_detector_choice(tmp_path):
    assert face_detector_name(AdConfig()) == "lbp"
    assert face_detector_name(AdConfig(face_detector="lbp", face_model=str(tmp_path / "x.onnx"))) == "lbp"
    with pytest.raises(SubjectError, match="face_model"):
        face_detector_name(AdConfig(face_detector="yunet"))
    with pytest.raises(SubjectError, match="face_model"):
        face_detector_name(AdConfig(face_model=str(tmp_path / "missing.onnx")))
