import importlib.machinery
import sys
import types

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fitad.prep.config import PrepConfig
from fitad.prep.text import (EASYOCR_DETECTOR_FILE, EasyOCRDetector, RapidOCRDetector, crosses_box_only,
                             detect_text, drop_line_art, easyocr_polygons, inpaint, make_text_detector, remove_text,
                             repeated_pattern, rotate_back, text_mask)


def text_image(lines=(("HELLO WORLD", (30, 30)), ("안녕하세요", (30, 110)))):
    from fitad.fonts import load_font

    img = Image.new("RGB", (420, 200), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    boxes = []
    for text, (x, y) in lines:
        draw.text((x, y), text, font=load_font(40), fill=(0, 0, 0))
        boxes.append(draw.textbbox((x, y), text, font=load_font(40)))
    return np.asarray(img).copy(), boxes


@pytest.fixture(scope="module")
def rapid():
    return RapidOCRDetector(PrepConfig())


def covered(mask: np.ndarray, box) -> float:
    x0, y0, x1, y1 = box
    return float((mask[y0:y1, x0:x1] > 0).mean())


def test_rapidocr_finds_english_and_korean_lines(rapid):
    rgb, boxes = text_image()
    polygons = rapid.detect(rgb)
    assert all(p.shape[1] == 2 for p in polygons)
    mask = text_mask(rgb.shape, polygons)
    assert all(covered(mask, b) > 0.8 for b in boxes)
    assert (mask > 0).mean() < 0.5  # boxes around the lines, not the whole image


def test_rapidocr_maps_boxes_back_from_the_downscaled_copy():
    rgb, boxes = text_image()
    big = np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1)  # 1260 x 600, detection runs at 960
    polygons = RapidOCRDetector(PrepConfig(detect_max_side=960)).detect(big)
    mask = text_mask(big.shape, polygons)
    assert all(covered(mask, [3 * v for v in b]) > 0.8 for b in boxes)


def test_blank_image_has_no_text_and_is_left_unchanged(rapid):
    rgb = np.full((120, 160, 3), 240, np.uint8)
    polygons = rapid.detect(rgb)
    assert polygons == []
    cleaned, mask = remove_text(rgb, polygons)
    assert cleaned is rgb and not mask.any()


@pytest.mark.parametrize("method", ["ns", "telea"])
def test_remove_text_inpaints_the_glyphs(rapid, method):
    rgb, boxes = text_image()
    cleaned, mask = remove_text(rgb, rapid.detect(rgb), dilate_px=4, method=method)
    for x0, y0, x1, y1 in boxes:
        assert (rgb[y0:y1, x0:x1] < 128).mean() > 0.05            # there was ink
        assert (cleaned[y0:y1, x0:x1] < 128).mean() < 0.002       # and now there is none
    assert rapid.detect(cleaned) == []


def test_text_mask_dilation_grows_the_polygons():
    poly = [np.array([[10, 10], [30, 10], [30, 20], [10, 20]], np.float32)]
    plain, grown = text_mask((40, 40), poly), text_mask((40, 40), poly, dilate_px=3)
    assert plain[15, 20] == 255 and plain[15, 33] == 0 and grown[15, 33] == 255
    assert np.count_nonzero(grown) > np.count_nonzero(plain)


def test_inpaint_only_touches_the_mask():
    rgb = np.random.default_rng(0).integers(0, 255, (50, 50, 3), dtype=np.uint8)
    mask = np.zeros((50, 50), np.uint8)
    mask[20:30, 20:30] = 255
    out = inpaint(rgb, mask)
    assert np.array_equal(out[mask == 0], rgb[mask == 0])


def test_line_art_detection_is_dropped_but_glyphs_are_kept():
    legs = np.full((120, 120, 3), 250, np.uint8)
    legs[:, 30:36] = 0   # two long strokes that run through the whole box
    legs[:, 80:86] = 0
    box = np.array([[20, 20], [100, 20], [100, 100], [20, 100]], np.float32)
    assert crosses_box_only(legs, box)
    rgb, boxes = text_image()
    x0, y0, x1, y1 = boxes[0]
    glyph_box = np.array([[x0 - 6, y0 - 6], [x1 + 6, y0 - 6], [x1 + 6, y1 + 6], [x0 - 6, y1 + 6]], np.float32)
    assert not crosses_box_only(rgb, glyph_box)


def test_overlapping_polygons_are_all_filled():
    a = np.array([[10, 10], [50, 10], [50, 50], [10, 50]], np.float32)
    b = a + 20                                                      # overlaps a on [30, 50)^2
    mask = text_mask((80, 80), [a, b]) > 0
    expected = np.zeros((80, 80), bool)
    expected[10:51, 10:51] = expected[30:71, 30:71] = True
    assert np.array_equal(mask, expected)


def test_a_tight_box_on_big_outlined_lettering_is_kept():
    """The detector's box can sit inside an outlined glyph's stroke; grown by a quarter of its side, a glyph lies within."""
    rgb = np.full((160, 160, 3), 250, np.uint8)
    rgb[40:120, 40:120] = 0                                         # one thick glyph-like blob
    rgb[55:105, 55:105] = 250
    tight = np.array([[45, 45], [115, 45], [115, 115], [45, 115]], np.float32)
    assert crosses_box_only(rgb, tight)                             # seen from the tight box: strokes cross the edge
    assert len(drop_line_art(rgb, [tight])) == 1                    # the grown box holds the glyph: kept
    legs = np.full((160, 160, 3), 250, np.uint8)
    legs[:, 60:66] = legs[:, 100:106] = 0
    assert drop_line_art(legs, [tight]) == []                       # strokes that run on past the grown box: line art


def test_a_row_of_windows_is_not_text_but_a_line_of_letters_is():
    rgb = np.full((60, 220, 3), 235, np.uint8)
    for i in range(5):                                              # five identical window outlines
        x = 15 + 40 * i
        rgb[20:40, x:x + 24] = 40
        rgb[23:37, x + 3:x + 21] = 235
    row = np.array([[10, 15], [210, 15], [210, 45], [10, 45]], np.float32)
    assert repeated_pattern(rgb, row) and drop_line_art(rgb, [row]) == []
    text, boxes = text_image()
    for x0, y0, x1, y1 in boxes:
        line = np.array([[x0 - 4, y0 - 4], [x1 + 4, y0 - 4], [x1 + 4, y1 + 4], [x0 - 4, y1 + 4]], np.float32)
        assert not repeated_pattern(text, line) and len(drop_line_art(text, [line])) == 1


def test_lettering_with_windows_in_one_corner_of_its_box_is_kept():
    """A sound effect drawn over a building: its box holds a few windows at one end, but they do not make it up."""
    from fitad.fonts import load_font

    img = Image.new("RGB", (420, 120), (235, 235, 235))
    draw = ImageDraw.Draw(img)
    draw.text((10, 20), "BAM BAM", font=load_font(70), fill=(20, 20, 20))
    rgb = np.asarray(img).copy()
    for i in range(3):                                              # three windows at the right end
        x = 340 + 24 * i
        rgb[40:56, x:x + 16] = 40
        rgb[43:53, x + 3:x + 13] = 235
    box = np.array([[5, 15], [415, 15], [415, 105], [5, 105]], np.float32)
    assert not repeated_pattern(rgb, box) and len(drop_line_art(rgb, [box])) == 1


def test_big_lettering_gets_a_wider_margin_than_small():
    small = np.array([[10, 10], [60, 10], [60, 20], [10, 20]], np.float32)      # 10 px high
    big = np.array([[10, 100], [110, 100], [110, 200], [10, 200]], np.float32)  # 100 px high
    mask = text_mask((260, 200), [small, big], dilate_px=2, dilate_share=0.1) > 0
    assert mask[10:21, 10:61].all() and mask[8, 30] and not mask[5, 30]          # small: the 2 px floor
    assert mask[91, 60] and not mask[88, 60]                                      # big: 10 % of 100 px


def test_turned_pass_maps_columns_back():
    rgb = np.zeros((30, 50, 3), np.uint8)
    turned = np.rot90(rgb, -1)                                      # 50 rows, 30 columns
    assert turned.shape[:2] == (50, 30)
    # the turned image's pixel (u, v) shows the original pixel (x = v, y = 29 - u); polygons are in pixel-edge
    # coordinates, so pixel centres (+0.5) map to pixel centres
    probe = np.zeros((30, 50), np.uint8)
    probe[7, 12] = 1
    v, u = np.argwhere(np.rot90(probe, -1) == 1)[0]
    assert np.allclose(rotate_back(np.array([[u + 0.5, v + 0.5]], np.float32), 30), [[12.5, 7.5]])
    # a box over the turned columns [0, 10) covers the original rows [20, 30)
    back = rotate_back(np.array([[0, 5], [10, 5], [10, 9], [0, 9]], np.float32), 30)
    assert back[:, 1].min() == 20 and back[:, 1].max() == 30


def test_vertical_column_found_by_the_turned_pass(rapid):
    from fitad.fonts import load_font

    img = Image.new("RGB", (240, 420), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, ch in enumerate("안녕하세요반가워"):
        draw.text((100, 20 + 48 * i), ch, font=load_font(40), fill=(0, 0, 0))
    rgb = np.asarray(img).copy()
    box = (96, 16, 146, 20 + 48 * 8)
    upright = text_mask(rgb.shape, detect_text(rapid, rgb, PrepConfig(detect_vertical=False, detect_small_side=0)))
    both = text_mask(rgb.shape, detect_text(rapid, rgb, PrepConfig(detect_vertical=True, detect_small_side=0)))
    assert covered(both, box) >= 0.8 and covered(both, box) >= covered(upright, box)


# ---------------------------------------------------------------- EasyOCR
# EasyOCR's weights cannot be downloaded here, so its Reader is replaced by a stand-in with the
# same API; the code path through fitad (selection, Reader arguments, box conversion) is the real one.

class FakeReader:
    calls: list = []

    def __init__(self, lang_list, **kwargs):
        FakeReader.calls.append((lang_list, kwargs))

    def detect(self, img, **kwargs):
        assert img.ndim == 3
        return [[[10, 50, 5, 25]]], [[[[60, 30], [90, 32], [89, 50], [59, 48]]]]


@pytest.fixture
def fake_easyocr(tmp_path, monkeypatch):
    module = types.ModuleType("easyocr")
    module.__spec__ = importlib.machinery.ModuleSpec("easyocr", None)
    module.Reader = FakeReader
    monkeypatch.setitem(sys.modules, "easyocr", module)
    FakeReader.calls = []
    model_dir = tmp_path / "easyocr-models"
    model_dir.mkdir()
    return model_dir


def test_auto_uses_easyocr_when_its_weights_are_on_disk(fake_easyocr):
    (fake_easyocr / EASYOCR_DETECTOR_FILE).write_bytes(b"weights")
    detector, why = make_text_detector(PrepConfig(easyocr_model_dir=str(fake_easyocr)))
    assert isinstance(detector, EasyOCRDetector) and why.startswith("easyocr (auto")
    langs, kwargs = FakeReader.calls[-1]
    assert langs == ["ko", "en"] and kwargs["recognizer"] is False and kwargs["download_enabled"] is False
    polygons = detector.detect(np.zeros((60, 100, 3), np.uint8))
    assert [p.tolist() for p in polygons] == [[[10, 5], [50, 5], [50, 25], [10, 25]],
                                              [[60, 30], [90, 32], [89, 50], [59, 48]]]


def test_auto_falls_back_to_rapidocr_without_weights(fake_easyocr):
    detector, why = make_text_detector(PrepConfig(easyocr_model_dir=str(fake_easyocr)))
    assert isinstance(detector, RapidOCRDetector) and "no EasyOCR weights" in why


def test_forced_easyocr_without_weights_is_a_clear_error(fake_easyocr):
    with pytest.raises(FileNotFoundError, match=f"{EASYOCR_DETECTOR_FILE} not found"):
        make_text_detector(PrepConfig(text_detector="easyocr", easyocr_model_dir=str(fake_easyocr)))


def test_easyocr_output_unbatched_and_empty():
    assert easyocr_polygons([[1, 5, 2, 8]], [])[0].tolist() == [[1, 2], [5, 2], [5, 8], [1, 8]]
    assert easyocr_polygons([[]], [[]]) == []


def test_an_outline_of_any_shape_is_grown_by_its_thickness_not_its_box():
    from fitad.prep.text import stroke_width

    # an L of two 200 x 20 arms: its box is 200 px on each side, its strokes 20 px thick
    ell = np.array([[0, 0], [200, 0], [200, 20], [20, 20], [20, 200], [0, 200]], np.float32)
    assert 17 <= stroke_width(ell) <= 20
    quad = np.array([[0, 0], [200, 0], [200, 20], [0, 20]], np.float32)
    assert stroke_width(quad) == 20
    mask = text_mask((260, 260), [ell + 30], dilate_share=0.5)             # grown by about 10 px, not 100
    assert mask[40, 40] and mask[30 + 20 + 8, 30 + 100] and not mask[30 + 20 + 14, 30 + 100]
    assert not mask[130, 130]                                               # the L's open corner stays free


def test_lettering_regions_add_only_what_the_detector_has_not_found():
    from fitad.prep.letternet import LetteringMap

    class OneLine:
        name = "one-line"

        def detect(self, rgb):
            return [np.array([[10, 10], [110, 10], [110, 30], [10, 30]], np.float32)]

    prob = np.zeros((100, 100), np.float32)
    prob[5:15, 5:55] = 1.0              # lettering on the detected line (scale 0.5: image px x 10-110, y 10-30)
    prob[60:80, 20:60] = 1.0            # and a sound effect the detector missed (image px 40-120, 120-160)
    rgb = np.full((200, 200, 3), 255, np.uint8)
    polygons = detect_text(OneLine(), rgb, PrepConfig(detect_small_side=0), LetteringMap(prob, scale=0.5))
    assert len(polygons) == 2
    x0, y0 = polygons[1].min(axis=0)
    x1, y1 = polygons[1].max(axis=0)
    assert (abs(x0 - 40) <= 2, abs(y0 - 120) <= 2, abs(x1 - 120) <= 2, abs(y1 - 160) <= 2) == (True,) * 4
