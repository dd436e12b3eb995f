"""SNS ad formats: the platforms' exact sizes, aliases, custom sizes, safe zones, and fitting without stretching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fitad.ads.formats import FORMATS, AdFormat, FormatError, cover_box, fit_cover, get_format, resize, work_size

# The spec: the platforms' recommended upload sizes (width, height).
SPEC_SIZES = {
    "instagram_square": (1080, 1080),
    "instagram_portrait": (1080, 1350),
    "instagram_portrait_3x4": (1080, 1440),
    "instagram_story": (1080, 1920),
    "facebook_link": (1200, 630),
    "kakao_square": (720, 720),
    "kakao_banner": (800, 400),
}
SPEC_ALIASES = {
    "1:1": "instagram_square", "square": "instagram_square", "feed": "instagram_square",
    "4:5": "instagram_portrait", "portrait": "instagram_portrait", "3:4": "instagram_portrait_3x4",
    "9:16": "instagram_story", "story": "instagram_story", "reels": "instagram_story",
    "facebook": "facebook_link", "kakao": "kakao_square", "kakao_wide": "kakao_banner",
}


@pytest.mark.parametrize("key, size", sorted(SPEC_SIZES.items()))
def test_named_format_has_platform_size(key, size):
    fmt = get_format(key)
    assert (fmt.width, fmt.height) == size == fmt.size
    assert fmt.key == key
    assert fmt.to_dict()["width"] == size[0] and fmt.to_dict()["height"] == size[1]


def test_no_format_beyond_the_spec():
    assert set(FORMATS) == set(SPEC_SIZES)


@pytest.mark.parametrize("alias, key", sorted(SPEC_ALIASES.items()))
def test_alias(alias, key):
    assert get_format(alias).size == SPEC_SIZES[key]
    assert get_format(alias.upper()).key == key
    assert get_format(f"  {alias} ").key == key


@pytest.mark.parametrize("name", ["1200x800", "custom:1200x800", "1200 x 800", "1200×800", "1200X800"])
def test_custom_size(name):
    fmt = get_format(name)
    assert fmt.size == (1200, 800)
    assert fmt.key == "custom_1200x800"


@pytest.mark.parametrize("name, field", [("10x800", "width"), ("800x5000", "height")])
def test_custom_size_out_of_range(name, field):
    with pytest.raises(FormatError, match=field):
        get_format(name)


@pytest.mark.parametrize("name", ["tiktok", "", "1200x", "x800", "16:10", "instagram"])
def test_unknown_format_lists_the_choices(name):
    with pytest.raises(FormatError) as info:
        get_format(name)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "unknown format" in message
    for key in SPEC_SIZES:
        assert key in message
    for alias in ("story", "4:5", "WIDTHxHEIGHT"):
        assert alias in message


def test_story_safe_box_keeps_platform_ui_free():
    fmt = get_format("story")
    x0, y0, x1, y1 = fmt.safe_box()
    assert y0 >= 250                    # account bar
    assert fmt.height - y1 >= 340       # reply field and buttons
    assert 0 < x0 < x1 < fmt.width
    # still a usable area: most of the frame's middle
    assert (y1 - y0) >= 0.6 * fmt.height and (x1 - x0) >= 0.8 * fmt.width


@pytest.mark.parametrize("key", sorted(SPEC_SIZES))
def test_safe_box_inside_frame(key):
    fmt = get_format(key)
    x0, y0, x1, y1 = fmt.safe_box()
    assert 0 < x0 < x1 < fmt.width and 0 < y0 < y1 < fmt.height
    # centred horizontally
    assert x0 == fmt.width - x1


@pytest.mark.parametrize("key", sorted(SPEC_SIZES))
@pytest.mark.parametrize("native", [64, 512, 1024])
def test_work_size_keeps_aspect_and_pixel_count(key, native):
    fmt = get_format(key)
    w, h = work_size(fmt, native, 8)
    assert w % 8 == 0 and h % 8 == 0
    # the format's aspect within the 8-px alignment
    assert abs(w / h - fmt.width / fmt.height) <= (fmt.width / fmt.height) * (8 / min(w, h)) + 1e-9
    # about the model's native pixel count
    assert 0.75 * native ** 2 <= w * h <= 1.3 * native ** 2


def _circle_image(width: int, height: int, center: tuple[int, int], radius: int) -> np.ndarray:
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.circle(img, center, radius, (0, 0, 0), thickness=-1, lineType=cv2.LINE_AA)
    return img


def _dark_bbox(img: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(img.min(axis=2) < 128)
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("src", [(500, 300), (300, 500), (640, 640), (1200, 500)])
@pytest.mark.parametrize("dst", [(1080, 1080), (1080, 1920), (1200, 630), (800, 400), (1080, 1350)])
def test_fit_cover_never_stretches(src, dst):
    sw, sh = src
    dw, dh = dst
    radius = min(sw, sh) // 5
    img = _circle_image(sw, sh, (sw // 2, sh // 2), radius)
    x0, y0, x1, y1 = cover_box(sw, sh, dw, dh)
    cw, ch = x1 - x0, y1 - y0
    assert 0 <= x0 < x1 <= sw and 0 <= y0 < y1 <= sh
    # the crop has the destination's aspect, within one source pixel
    assert abs(cw - ch * dw / dh) <= 1 or abs(ch - cw * dh / dw) <= 1
    # one side is not cropped at all (cover = as large as possible)
    assert cw == sw or ch == sh
    out = fit_cover(img, dw, dh)
    assert out.shape == (dh, dw, 3) and out.dtype == np.uint8
    # the centred circle stays a circle, scaled by the cover factor
    bw, bh = _dark_bbox(out)
    assert abs(bw - bh) <= 2
    expected = 2 * radius * max(dw / sw, dh / sh)
    assert abs(bw - expected) <= 0.03 * expected + 3


def test_fit_cover_focus_keeps_the_subject():
    img = _circle_image(1200, 400, (100, 200), 60)       # circle near the left edge
    centred = fit_cover(img, 400, 400)
    assert centred.min() > 100                            # the middle crop misses it
    focused = fit_cover(img, 400, 400, focus=(100, 200))
    bw, bh = _dark_bbox(focused)
    assert abs(bw - bh) <= 2 and bw >= 110
    # the crop is clamped to the image: the focus at the very edge still gives a full crop
    assert cover_box(1200, 400, 400, 400, focus=(0, 0)) == (0, 0, 400, 400)
    assert cover_box(1200, 400, 400, 400, focus=(1200, 400)) == (800, 0, 1200, 400)


def test_resize_uses_area_when_shrinking_and_lanczos_when_enlarging(coffee):
    small = resize(coffee, 300, 200)
    np.testing.assert_array_equal(small, cv2.resize(coffee, (300, 200), interpolation=cv2.INTER_AREA))
    big = resize(coffee, 900, 600)
    np.testing.assert_array_equal(big, cv2.resize(coffee, (900, 600), interpolation=cv2.INTER_LANCZOS4))
    same = resize(coffee, 600, 400)
    np.testing.assert_array_equal(same, coffee)
    assert same is not coffee


def test_format_is_frozen():
    fmt = AdFormat("x", "X", 100, 100)
    with pytest.raises(Exception):
        fmt.width = 5  # type: ignore[misc]


@pytest.mark.parametrize("name, native, multiple", [("64x4096", 1024, 16), ("4096x512", 2048, 8)])
def test_work_size_stays_within_the_pipelines_limit(name, native, multiple):
    from fitad.ads.formats import MAX_SIDE, get_format, work_size

    fmt = get_format(name)
    width, height = work_size(fmt, native, multiple)
    assert max(width, height) <= MAX_SIDE and width % multiple == 0 and height % multiple == 0
    assert abs(width / height - fmt.aspect) / fmt.aspect < 0.35  # still the format's shape, as near as it can be
