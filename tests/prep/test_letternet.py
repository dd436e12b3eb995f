"""LetterNet: input layout, probability maps to polygons, the lettering opinion in drop_line_art, the bundled
network, config and backends, training on a few panels; and the flat fill before inpainting."""

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from fitad.config import ConfigError
from fitad.prep.config import PrepConfig
from fitad.prep.letternet import (BUNDLED, INPUT_SIDE, LetteringMap, LetterNetDetector, LetterTrainSettings,
                                  letternet_file, polygons_from_probability, prepare_input)
from fitad.prep.text import drop_line_art, fill_flat, inpaint, text_mask
from fitad.prep.unet import STRIDE


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


# ---------------------------------------------------------------- input

def test_input_keeps_the_aspect_ratio_is_padded_to_the_stride_and_white_is_one():
    rgb = np.full((200, 700, 3), 255, np.uint8)
    rgb[:, :350] = 0                                                # left half black, right half white
    x, scale = prepare_input(rgb)
    assert scale == pytest.approx(INPUT_SIDE / 700)
    h = round(200 * INPUT_SIDE / 700)                               # 320 x 91: the aspect ratio kept
    assert h == 91
    assert x.dtype == np.float32 and x.shape == (1, 3, 96, 320)     # 91 rows padded to 96, a multiple of 16
    assert x.shape[2] % STRIDE == 0 and x.shape[3] % STRIDE == 0
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.all(x[0, :, :h, :150] == -1.0) and np.all(x[0, :, :h, 170:] == 1.0)   # black -1, white exactly 1
    assert np.all(x[0, :, h:, :] == 0.0)                            # zero padding below the image


def test_input_of_a_tall_small_image_is_scaled_up_to_the_side():
    rgb = np.full((100, 30, 3), 255, np.uint8)
    x, scale = prepare_input(rgb, side=64)
    assert scale == pytest.approx(0.64)
    assert x.shape == (1, 3, 64, 32)                                # width round(19.2) = 19, padded to 32
    assert np.all(x[0, :, :, :19] == 1.0) and np.all(x[0, :, :, 19:] == 0.0)


# ---------------------------------------------------------------- probability map -> polygons

def drawn_regions() -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """A 120 x 160 probability map with two rectangles, an L and a speck; the three region masks; the L's empty corner."""
    prob = np.full((120, 160), 0.05, np.float32)
    a = np.zeros(prob.shape, bool)
    a[10:30, 10:40] = True
    b = np.zeros(prob.shape, bool)
    b[80:110, 10:50] = True
    el = np.zeros(prob.shape, bool)
    el[10:70, 90:105] = True                                        # the upright stroke of the L
    el[55:70, 90:150] = True                                        # its foot
    corner = np.zeros(prob.shape, bool)
    corner[10:55, 105:150] = True                                   # inside the L's bounding rectangle, not the L
    for region, value in ((a, 0.9), (b, 0.8), (el, 0.99)):
        prob[region] = value
    prob[100:103, 140:143] = 0.95                                   # a 3 x 3 speck, under min_area
    return prob, [a, b, el], corner


def best_match(mask: np.ndarray, polygons: list[np.ndarray]) -> tuple[float, int]:
    scores = [iou(text_mask(mask.shape, [p]), mask) for p in polygons]
    return max(scores), int(np.argmax(scores))


def test_regions_become_outlines_in_image_pixels():
    prob, regions, corner = drawn_regions()
    polygons = polygons_from_probability(prob, scale=1.0)
    assert len(polygons) == 3                                       # two rectangles and the L; the speck dropped
    assert all(p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 2 for p in polygons)
    matched = set()
    for region in regions:
        score, index = best_match(region, polygons)
        assert score >= 0.8
        matched.add(index)
    assert matched == {0, 1, 2}                                     # one polygon per region
    _score, index = best_match(regions[2], polygons)
    el = text_mask(prob.shape, [polygons[index]]) > 0
    inner_corner = np.zeros_like(corner)
    inner_corner[12:53, 107:150] = True                             # the corner less a 2 px margin along the L
    assert not (el & inner_corner).any()                            # an outline, not the L's bounding rectangle
    assert (el & corner).sum() < 0.05 * corner.sum()


def test_polygons_are_scaled_back_to_the_image():
    prob, regions, _corner = drawn_regions()
    polygons = polygons_from_probability(prob, scale=0.5)           # the network saw the image at half size
    assert len(polygons) == 3
    for region in regions:
        big = cv2.resize(region.astype(np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST)
        score, _index = best_match(big, polygons)
        assert score >= 0.8
    ys, xs = np.nonzero(regions[0])
    first = [p for p in polygons if p[:, 0].max() < 100 and p[:, 1].max() < 100]
    assert len(first) == 1                                          # rectangle a: 30 x 20 net px -> ~60 x 40 px
    width, height = np.ptp(first[0], axis=0)
    assert width == pytest.approx(2 * (xs.max() - xs.min()), abs=2)
    assert height == pytest.approx(2 * (ys.max() - ys.min()), abs=2)


def test_threshold_and_min_area_select_the_regions():
    prob, _regions, _corner = drawn_regions()
    assert len(polygons_from_probability(prob, 1.0, threshold=0.85)) == 2   # rectangle b (0.8) now below
    assert len(polygons_from_probability(prob, 1.0, min_area=1)) == 4       # the speck (contour area 4) now in
    assert polygons_from_probability(np.zeros((50, 50), np.float32), 1.0) == []


# ---------------------------------------------------------------- lettering map

def lettering_map() -> LetteringMap:
    """A 100 x 100 map of a 200 x 200 image: sure lettering top left, none bottom right, unsure top right."""
    prob = np.zeros((100, 100), np.float32)
    prob[:40, :40] = 0.95
    prob[:40, 60:] = 0.3
    return LetteringMap(prob, scale=0.5)


def box(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_lettering_map_confirms_denies_or_abstains():
    m = lettering_map()
    sure, none, unsure = box(10, 10, 70, 70), box(130, 130, 190, 190), box(130, 10, 190, 70)
    assert m.mean_inside(sure) == pytest.approx(0.95) and m.confirms(sure) and not m.denies(sure)
    assert m.mean_inside(none) == pytest.approx(0.0) and m.denies(none) and not m.confirms(none)
    assert m.mean_inside(unsure) == pytest.approx(0.3) and not m.confirms(unsure) and not m.denies(unsure)
    # half over sure lettering, half over none: net pixels 20..59 by 10..29, 20 columns at 0.95 of 40
    half = box(40, 20, 118, 58)
    assert m.mean_inside(half) == pytest.approx(0.95 * 20 / 40, abs=0.03)
    outside = box(400, 400, 500, 500)                               # off the map: no opinion
    assert m.mean_inside(outside) is None and not m.confirms(outside) and not m.denies(outside)


def test_lettering_map_polygons_are_in_image_pixels():
    polygons = lettering_map().polygons()
    assert len(polygons) == 1                                       # 0.3 is under the 0.5 threshold
    x0, y0 = polygons[0].min(axis=0)
    x1, y1 = polygons[0].max(axis=0)
    assert (x0, y0) == (pytest.approx(1, abs=1), pytest.approx(1, abs=1))
    assert (x1, y1) == (pytest.approx(79, abs=1.5), pytest.approx(79, abs=1.5))


# ---------------------------------------------------------------- drop_line_art with a lettering map

def legs_image() -> tuple[np.ndarray, np.ndarray]:
    legs = np.full((120, 120, 3), 250, np.uint8)
    legs[:, 30:36] = 0                                              # two strokes that run through the whole box
    legs[:, 80:86] = 0
    return legs, box(20, 20, 100, 100)


def glyph_image() -> tuple[np.ndarray, np.ndarray]:
    rgb = np.full((160, 160, 3), 250, np.uint8)
    rgb[40:120, 40:120] = 0                                         # one thick ring glyph, all inside the box
    rgb[55:105, 55:105] = 250
    return rgb, box(30, 30, 130, 130)


def uniform_map(shape, value: float) -> LetteringMap:
    return LetteringMap(np.full(shape[:2], value, np.float32), scale=1.0)


def test_lettering_the_map_confirms_is_kept_though_the_glyph_rules_drop_it():
    legs, detection = legs_image()
    assert drop_line_art(legs, [detection]) == []                   # the glyph rules: line art
    assert drop_line_art(legs, [detection], lettering=None) == []
    kept = drop_line_art(legs, [detection], lettering=uniform_map(legs.shape, 0.9))
    assert len(kept) == 1 and kept[0] is detection
    assert drop_line_art(legs, [detection], lettering=uniform_map(legs.shape, 0.3)) == []   # unsure: the rules decide


def test_a_glyph_the_map_denies_is_dropped():
    rgb, detection = glyph_image()
    assert len(drop_line_art(rgb, [detection])) == 1                # the glyph rules keep it
    assert len(drop_line_art(rgb, [detection], lettering=uniform_map(rgb.shape, 0.3))) == 1
    assert drop_line_art(rgb, [detection], lettering=uniform_map(rgb.shape, 0.0)) == []
    assert len(drop_line_art(rgb, [detection], lettering=uniform_map(rgb.shape, 0.9))) == 1


def test_each_detection_gets_its_own_opinion():
    legs, on_legs = legs_image()
    prob = np.zeros(legs.shape[:2], np.float32)
    prob[:, :50] = 1.0                                              # lettering on the left only
    left, right = box(5, 20, 55, 100), box(65, 20, 115, 100)       # both cross a stroke: line art by the rules
    m = LetteringMap(prob, 1.0)
    kept = drop_line_art(legs, [left, right, on_legs], lettering=m)
    assert [k is left for k in kept] == [True]


# ---------------------------------------------------------------- the bundled network

def draw_panel(word: str, size: int, at=(40, 40)) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """A white 500 x 400 page with ``word`` in the bundled bold font and a plain outlined figure.

    Returns the RGB panel, the word's ink box (x0, y0, x1, y1; exclusive) and the figure's mask.
    """
    from fitad.synth_styles.fonts import BUNDLED_FONT

    from .conftest import draw_figure

    font = ImageFont.truetype(str(BUNDLED_FONT), size)
    word_only = Image.new("L", (500, 400), 255)
    ImageDraw.Draw(word_only).text(at, word, font=font, fill=0)
    ys, xs = np.nonzero(np.asarray(word_only) < 128)
    assert len(xs) > 500                                            # the font has the glyphs
    ink_box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    img = Image.new("RGB", (500, 400), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text(at, word, font=font, fill=(0, 0, 0))
    draw_figure(draw, 320, 200, scale=1.2)                          # head, body and legs outlined in black
    figure = Image.new("L", (500, 400), 0)
    draw_figure(ImageDraw.Draw(figure), 320, 200, scale=1.2, mask=True)
    rgb = np.asarray(img).copy()
    assert not (np.asarray(figure)[ink_box[1]:ink_box[3], ink_box[0]:ink_box[2]] > 0).any()   # apart
    return rgb, ink_box, np.asarray(figure) > 0


@pytest.fixture(scope="module")
def letters():
    return LetterNetDetector(threads=1)


@pytest.mark.parametrize("word,size", [("쾅", 90), ("쾅쾅", 90), ("BOOM", 60)])
def test_the_bundled_network_finds_a_big_word_and_not_the_figure(letters, word, size):
    rgb, (x0, y0, x1, y1), figure = draw_panel(word, size)
    polygons = letters.detect(rgb)
    assert polygons and all(p.dtype == np.float32 and p.shape[1] == 2 for p in polygons)
    best = max(float((text_mask(rgb.shape, [p])[y0:y1, x0:x1] > 0).mean()) for p in polygons)
    assert best >= 0.5                                              # one polygon covers half the word's box
    union = text_mask(rgb.shape, polygons) > 0
    assert (union & figure).sum() < 0.05 * figure.sum()             # the figure is not lettering


def test_the_bundled_network_reads_a_map_at_its_own_size(letters):
    rgb, (x0, y0, x1, y1), _figure = draw_panel("쾅", 90)
    m = letters.read(rgb)
    scale = INPUT_SIDE / 500
    assert m.scale == pytest.approx(scale) and m.prob.shape == (round(400 * scale), round(500 * scale))
    assert m.prob.min() >= 0.0 and m.prob.max() <= 1.0
    assert m.confirms(box(x0, y0, x1, y1))                          # the word's box reads as lettering
    assert m.denies(box(20, 300, 120, 390))                         # a patch of empty paper does not


def test_the_bundled_network_finds_nothing_on_blank_paper(letters):
    for paper in (255, 246):
        blank = np.full((400, 500, 3), paper, np.uint8)
        polygons = letters.detect(blank)
        assert np.count_nonzero(text_mask(blank.shape, polygons)) < 0.01 * 400 * 500
        assert letters.read(blank).prob.max() < 0.5


# ---------------------------------------------------------------- config and backends

def test_the_config_names_the_network_file(tmp_path):
    assert BUNDLED.is_file() and BUNDLED.stat().st_size < 512 * 1024
    assert letternet_file(PrepConfig()) == BUNDLED
    assert letternet_file(PrepConfig(letternet=False)) is None
    own = tmp_path / "mine.onnx"
    own.write_bytes(BUNDLED.read_bytes())
    assert letternet_file(PrepConfig(letternet_model=str(own))) == own
    with pytest.raises(ConfigError, match="letternet_model = .*none.onnx.*no such file"):
        PrepConfig(letternet_model=str(tmp_path / "none.onnx"))
    with pytest.raises(FileNotFoundError, match="train-letternet"):
        LetterNetDetector(tmp_path / "none.onnx")


def test_backends_load_the_network_unless_it_is_off(tmp_path, monkeypatch):
    from fitad.prep.run import load_backends

    monkeypatch.setenv("U2NET_HOME", str(tmp_path))                 # no rembg model there: FigureNet segments
    off = load_backends(PrepConfig(letternet=False, text_detector="rapidocr"), threads=1, needs=("text_detector",))
    assert off.text is not None and off.letters is None and "letternet" not in off.notes
    on = load_backends(PrepConfig(text_detector="rapidocr"), threads=1, needs=("text_detector",))
    assert isinstance(on.letters, LetterNetDetector) and on.notes["letternet"] == "letternet:letternet.onnx"
    segment_only = load_backends(PrepConfig(), threads=1, needs=("segmenter",))
    assert segment_only.letters is None


def test_the_resume_fingerprint_follows_the_network_file(tmp_path, monkeypatch):
    from fitad.prep.run import resolved_fingerprint

    monkeypatch.setenv("U2NET_HOME", str(tmp_path))                 # no rembg model there
    digest = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()[:12]
    default = resolved_fingerprint(PrepConfig())
    assert f"+letternet:{digest}" in default
    off = resolved_fingerprint(PrepConfig(letternet=False))
    assert "letternet" not in off.split(":", 1)[1] and off != default
    own = tmp_path / "mine.onnx"
    own.write_bytes(BUNDLED.read_bytes())
    config = PrepConfig(letternet_model=str(own))
    before = resolved_fingerprint(config)
    assert f"+letternet:{digest}" in before
    own.write_bytes(BUNDLED.read_bytes() + b"\0")                   # another network file at the same path
    after = resolved_fingerprint(config)
    assert after != before
    assert f"+letternet:{hashlib.sha256(own.read_bytes()).hexdigest()[:12]}" in after


# ---------------------------------------------------------------- training

def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="at least 8 panels"):
        LetterTrainSettings(synth_panels=3, styles_panels=4)
    with pytest.raises(ValueError, match="at least 8 panels"):
        LetterTrainSettings(synth_panels=-1, styles_panels=20)
    with pytest.raises(ValueError, match="epochs"):
        LetterTrainSettings(epochs=0)
    with pytest.raises(ValueError, match="crop must be a multiple of 16"):
        LetterTrainSettings(crop=100)
    with pytest.raises(ValueError, match="crop"):
        LetterTrainSettings(crop=INPUT_SIDE + STRIDE)
    with pytest.raises(ValueError, match="device"):
        LetterTrainSettings(device="tpu")
    LetterTrainSettings(synth_panels=4, styles_panels=4, crop=64, device="cpu")   # the smallest that is fine


def test_training_on_a_few_panels_exports_a_network_the_detector_runs(tmp_path):
    """The smoke test of `fitad prep train-letternet`: draw, train one epoch on the CPU, export, load, detect."""
    from fitad.prep.letternet import train

    out = tmp_path / "letters.onnx"
    messages = []
    settings = LetterTrainSettings(synth_panels=4, styles_panels=4, epochs=1, batch=4, crop=64, device="cpu")
    stats = train(settings, out, tmp_path, progress=messages.append)
    assert out.is_file() and not (tmp_path / "letters.onnx.export").exists()
    assert stats["epoch"] == 1 and np.isfinite(stats["loss"]) and 0.0 <= stats["train_iou"] <= 1.0
    assert any("epoch 1/1" in m for m in messages) and any("drew 8 panels" in m for m in messages)
    assert list(tmp_path.glob("letter-pairs-4-4-*.npz"))            # the pairs are kept for the next run
    detector = LetterNetDetector(out, threads=1)
    rgb = np.full((210, 330, 3), 240, np.uint8)                     # any size: dynamic axes
    polygons = detector.detect(rgb)
    assert isinstance(polygons, list) and all(p.shape[1] == 2 for p in polygons)
    m = detector.read(rgb)
    assert m.prob.shape == (round(210 * INPUT_SIDE / 330), INPUT_SIDE)
    assert np.isfinite(m.prob).all()


# ---------------------------------------------------------------- flat fill before inpainting

PAPER = (240, 230, 210)


def flat_page() -> tuple[np.ndarray, np.ndarray]:
    """Paper with lettering in a masked block and a thin dark line that crosses a little of the ring around it."""
    rgb = np.zeros((80, 100, 3), np.uint8)
    rgb[:] = PAPER
    rgb[34:46, 34:66] = 20                                          # the "lettering" under the mask
    rgb[40, 0:30] = 10                                              # a balloon outline running up to the block
    mask = np.zeros((80, 100), np.uint8)
    mask[30:50, 30:70] = 255
    return rgb, mask


def test_a_region_on_flat_paper_is_filled_with_the_paper_colour():
    rgb, mask = flat_page()
    out, left = fill_flat(rgb, mask)
    block = mask > 0
    assert np.all(out[block] == PAPER)                              # exactly the paper, no smear from the line
    assert not left.any()                                           # nothing left to inpaint
    assert np.array_equal(out[~block], rgb[~block])                 # outside the mask: untouched
    assert np.all(out[40, 0:30] == 10)


@pytest.mark.parametrize("background", ["stripes", "gradient"])
def test_a_region_on_a_busy_background_is_left_to_inpainting(background):
    rgb, mask = flat_page()
    if background == "stripes":
        rgb[:, ::4] = 40                                            # a dark column every 4 px
        rgb[:, 1::4] = 40
    else:
        ramp = np.linspace(0, 255, 100).astype(np.uint8)           # ~2.6 grey levels a pixel
        rgb[:] = ramp[None, :, None]
    rgb[34:46, 34:66] = 20
    out, left = fill_flat(rgb, mask)
    assert np.array_equal(left, mask)                               # all of it left to inpaint
    assert np.array_equal(out, rgb)                                 # and nothing filled


def test_flat_and_busy_regions_of_one_image_are_told_apart():
    rgb, mask = flat_page()
    rgb[:, 78:][:, ::2] = 40                                        # the right 22 columns striped
    mask[5:15, 84:95] = 255                                         # a second region, on the stripes
    out, left = fill_flat(rgb, mask)
    assert np.all(out[30:50, 30:70] == PAPER) and not left[30:50, 30:70].any()
    assert np.array_equal(left[5:15, 84:95], mask[5:15, 84:95]) and np.array_equal(out[5:15, 84:95], rgb[5:15, 84:95])


def test_inpaint_fills_flat_paper_exactly():
    rgb, mask = flat_page()
    block = mask > 0
    out = inpaint(rgb, mask, "ns", 3)
    assert np.all(out[block] == PAPER) and np.array_equal(out[~block], rgb[~block])
    diffused = cv2.inpaint(rgb, mask, 3, cv2.INPAINT_NS)            # what diffusion alone makes of it
    assert not np.all(diffused[block] == PAPER)                     # the line is dragged in: the test can tell


def test_the_map_abstains_on_lettering_too_small_for_it_to_see():
    """A 2000 px scan reaches the network at a tenth of its size: a 40 px text line is 4 network pixels tall,
    too small to deny (the detector's word stands), while a 120 px region the network saw empty is denied."""
    lettering = LetteringMap(np.zeros((200, 160), np.float32), scale=0.1)
    line = np.array([[300, 500], [900, 500], [900, 540], [300, 540]], np.float32)
    big = np.array([[300, 500], [900, 500], [900, 620], [300, 620]], np.float32)
    assert lettering.mean_inside(line) == 0.0 and not lettering.denies(line)
    assert lettering.denies(big)
