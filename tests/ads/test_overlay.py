"""Headline overlay: WCAG contrast (re-measured here independently), line breaking, placement, logo."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from fitad.ads.overlay import (
    OverlayError,
    OverlaySpec,
    contrast_ratio,
    graphemes,
    overlay_text,
    relative_luminance,
    wrap_text,
)
from fitad.fonts import default_font_path, load_font

H, W = 480, 640
PUNCT = set(",.!?…")


# ------------------------------------------------------------ an independent WCAG 2.x reference

def _srgb_to_linear(v):
    c = np.asarray(v, dtype=np.float64) / 255.0
    return np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def ref_luminance(rgb):
    lin = _srgb_to_linear(rgb)
    return 0.2126 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.0722 * lin[..., 2]


def ref_contrast(a, b):
    la, lb = ref_luminance(a), ref_luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def hex_rgb(value: str) -> np.ndarray:
    return np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)])


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square (Chebyshev) dilation by r pixels, numpy only."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def ring_contrast(after: np.ndarray, report: dict) -> float:
    """5th percentile of the contrast between the text colour (its fully covered pixels, found by
    colour in the final image) and the final pixels 3-4 px around them (past the anti-aliased edge)."""
    tc = hex_rgb(report["text_color"])
    x0, y0, x1, y1 = report["box"]
    crop = after[y0:y1, x0:x1].astype(int)
    core = (crop == tc).all(-1)
    assert core.sum() > 100, "no fully covered glyph pixels found"
    ring = dilate(core, 4) & ~dilate(core, 2)
    return float(np.percentile(ref_contrast(tc, crop[ring]), 5))


def diff_contrast(before: np.ndarray, after: np.ndarray, report: dict) -> float:
    """Without a backdrop: contrast between the text colour and the original pixels it was drawn on."""
    changed = (before != after).any(-1)
    return float(np.percentile(ref_contrast(hex_rgb(report["text_color"]), before[changed]), 5))


def assert_unchanged_outside(before, after, box):
    x0, y0, x1, y1 = box
    outside = np.ones(before.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert not (before != after).any(-1)[outside].any()


# ------------------------------------------------------------ backgrounds

def _uniform(value):
    return np.full((H, W, 3), value, np.uint8)


def _noise():
    return np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _stripes():
    bars = ((np.arange(W) // 6) % 2 * 255).astype(np.uint8)
    return np.repeat(np.repeat(bars[None, :, None], H, 0), 3, 2)


HEADLINE = "신선한 재료로 매일 만든 수제 버거"


# ------------------------------------------------------------ WCAG functions

def test_wcag_functions_match_the_definition():
    rng = np.random.default_rng(1)
    colors = rng.integers(0, 256, (200, 3))
    np.testing.assert_allclose(relative_luminance(colors), ref_luminance(colors), rtol=1e-12)
    np.testing.assert_allclose(contrast_ratio(colors[:100], colors[100:]),
                               ref_contrast(colors[:100], colors[100:]), rtol=1e-12)
    assert contrast_ratio("#FFFFFF", "#000000") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.005)   # WCAG's classic
    assert contrast_ratio("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.005)
    # 10/255 = 0.0392 is below the 0.03928 threshold: the linear branch applies.
    assert relative_luminance((10, 10, 10)) == pytest.approx(10 / 255 / 12.92)


# ------------------------------------------------------------ contrast on real backgrounds

@pytest.mark.parametrize("value", [255, 0, 128], ids=["white", "black", "mid-grey"])
def test_plain_backgrounds_reach_min_contrast_without_backdrop(value):
    before = _uniform(value)
    keep = before.copy()
    after, rep = overlay_text(before, OverlaySpec(HEADLINE))
    np.testing.assert_array_equal(before, keep)              # input untouched
    assert rep["backdrop"] is None
    assert rep["contrast"] >= 4.5
    assert diff_contrast(before, after, rep) >= 4.5
    assert ring_contrast(after, rep) >= 4.5
    assert_unchanged_outside(before, after, rep["box"])
    expected = "#FFFFFF" if value == 0 else "#111111"
    assert rep["text_color"] == expected


@pytest.mark.parametrize("make", [_noise, _stripes], ids=["noise", "stripes"])
def test_busy_backgrounds_get_a_backdrop_that_reaches_min_contrast(make):
    before = make()
    after, rep = overlay_text(before, OverlaySpec(HEADLINE))
    assert rep["contrast_before_backdrop"] < 4.5
    assert rep["backdrop"] is not None and 0 < rep["backdrop"]["opacity"] <= 1
    assert rep["contrast"] >= 4.5
    assert ring_contrast(after, rep) >= 4.5
    assert_unchanged_outside(before, after, rep["box"])
    # the backdrop really was composited: inside the block, every pixel not already of the
    # backdrop's colour changed (rounded corners aside)
    x0, y0, x1, y1 = rep["box"]
    block_before, block_after = before[y0:y1, x0:x1], after[y0:y1, x0:x1]
    other = (block_before != hex_rgb(rep["backdrop"]["color"])).any(-1)
    assert (block_before != block_after).any(-1)[other].mean() > 0.97


def test_fixed_low_contrast_text_colour_gets_a_backdrop():
    before = _uniform(255)
    after, rep = overlay_text(before, OverlaySpec(HEADLINE, text_color="#ffffff"))
    assert rep["text_color"] == "#FFFFFF"
    assert rep["contrast_before_backdrop"] == pytest.approx(1.0)
    assert rep["backdrop"] is not None
    assert rep["contrast"] >= 4.5 and ring_contrast(after, rep) >= 4.5


def test_usable_brand_colour_is_preferred_for_text():
    after, rep = overlay_text(_uniform(255), OverlaySpec(HEADLINE, brand_colors=["#FFD166", "#1D3557"]))
    assert rep["text_color"] == "#1D3557"       # yellow on white is unreadable, navy is usable
    assert rep["backdrop"] is None and ring_contrast(after, rep) >= 4.5


def test_impossible_min_contrast_for_fixed_colour_is_an_error():
    with pytest.raises(OverlayError, match="text_color"):
        overlay_text(_uniform(128), OverlaySpec(HEADLINE, text_color="#777777", min_contrast=7))
    with pytest.raises(OverlayError, match="min_contrast"):
        overlay_text(_noise(), OverlaySpec(HEADLINE, min_contrast=20))
    # a higher bar is met when reachable: opaque enough backdrop, re-measured independently
    after, rep = overlay_text(_noise(), OverlaySpec(HEADLINE, min_contrast=12))
    assert rep["contrast"] >= 12 and ring_contrast(after, rep) >= 12


# ------------------------------------------------------------ line breaking

def test_korean_headline_breaks_only_at_spaces_when_words_fit():
    text = "오늘 하루만 모든 메뉴 반값 할인 행사를 진행합니다"
    _, rep = overlay_text(np.full((400, 300, 3), 240, np.uint8), OverlaySpec(text))
    assert len(rep["lines"]) >= 2
    assert " ".join(rep["lines"]) == text         # a break inside a word would add a space


def test_long_word_breaks_between_whole_syllables():
    word = "가나다라마바사아자차카타파하" * 4
    _, rep = overlay_text(np.full((400, 300, 3), 240, np.uint8), OverlaySpec(word, max_lines=6))
    lines = rep["lines"]
    assert len(lines) >= 2
    assert "".join(lines) == word
    for line in lines:
        assert unicodedata.is_normalized("NFC", line)
        assert all(0xAC00 <= ord(c) <= 0xD7A3 for c in line)


def test_decomposed_input_comes_out_as_whole_syllables():
    word = "초특가할인행사진행중입니다지금바로방문하세요"
    nfd = unicodedata.normalize("NFD", word)
    assert len(nfd) > len(word)
    _, rep = overlay_text(np.full((400, 300, 3), 240, np.uint8), OverlaySpec(nfd, max_lines=5))
    assert "".join(rep["lines"]) == word
    assert not any(0x1100 <= ord(c) <= 0x11FF for line in rep["lines"] for c in line)


def test_graphemes_keep_jamo_runs_and_combining_sequences():
    old_hangul = "\u1112\u119e\u11ab"          # 훈민정음-era syllable: no precomposed form
    assert graphemes(old_hangul + "글") == [old_hangul, "글"]
    assert graphemes("e\u0301a") == ["e\u0301", "a"]
    assert graphemes("\U0001F44D\U0001F3FD!") == ["\U0001F44D\U0001F3FD", "!"]
    assert graphemes("\U0001F1F0\U0001F1F7\U0001F1EF\U0001F1F5") == ["\U0001F1F0\U0001F1F7",
                                                                     "\U0001F1EF\U0001F1F5"]
    regex = pytest.importorskip("regex")
    sample = unicodedata.normalize("NFD", "한글 광고") + old_hangul * 3 + "cafe\u0301 \U0001F469\u200D\U0001F373"
    assert graphemes(sample) == regex.findall(r"\X", sample)


def test_forced_breaks_never_split_a_cluster():
    old_hangul = "\u1112\u119e\u11ab"
    text = (old_hangul + "글" + "e\u0301" + "\u0644\u0651") * 5   # NFC makes é; lam + shadda stays a pair
    text = unicodedata.normalize("NFC", text)
    assert "\u0651" in text and old_hangul in text
    font = load_font(24)
    clusters = graphemes(text)
    # (the bundled font has no conjoining Jamo: the old syllable is three 22 px boxes wide)
    for width in range(70, 200, 9):
        lines = wrap_text(text, font, width)
        assert lines is not None and "".join(lines) == text
        # every line is a run of whole clusters
        pos = 0
        for line in lines:
            got = graphemes(line)
            assert got == clusters[pos:pos + len(got)]
            pos += len(got)
        assert all(font.getlength(line) <= width for line in lines)


@pytest.mark.parametrize("text", [
    "할인!할인?할인,할인…할인.할인!!" * 4,
    "오늘만 특가 , 지금 바로 ! 서두르세요 … 마감 임박 ? 네 .",
])
def test_punctuation_never_starts_a_line(text):
    font = load_font(22)
    for width in range(40, 260, 5):
        lines = wrap_text(text, font, width)
        if lines is None:
            continue
        assert all(line and line[0] not in PUNCT for line in lines), (width, lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_explicit_newlines_are_kept():
    _, rep = overlay_text(_uniform(255), OverlaySpec("여름 한정\n수박 주스 1+1", subcopy="7월 31일까지"))
    assert rep["lines"] == ["여름 한정", "수박 주스 1+1"]
    assert rep["subcopy_lines"] == ["7월 31일까지"]
    assert rep["subcopy_px"] < rep["font_px"]


def test_custom_font_path_is_used_and_reported():
    _, rep = overlay_text(_uniform(255), OverlaySpec("Grand Opening 오픈 기념", font_path=default_font_path()))
    assert rep["font"] == default_font_path().name and rep["lines"]


def test_too_long_headline_is_an_error_naming_headline():
    with pytest.raises(OverlayError, match="headline") as err:
        overlay_text(np.full((200, 200, 3), 200, np.uint8), OverlaySpec("가" * 400))
    assert "400" in str(err.value)


# ------------------------------------------------------------ placement, safe box, logo

def test_text_avoids_a_subject_in_the_bottom_half():
    before = _noise()
    mask = np.zeros((H, W), np.uint8)
    mask[H // 2:] = 255
    after, rep = overlay_text(before, OverlaySpec(HEADLINE, subcopy="연남동 · 매일 11시"), subject_mask=mask)
    assert rep["placement"] == "top"
    assert rep["subject_overlap"] < 0.01
    x0, y0, x1, y1 = rep["box"]
    assert mask[y0:y1, x0:x1].mean() / 255 < 0.01           # checked here too, not just reported
    assert not (before != after).any(-1)[H // 2:].any()


def test_fixed_placement_is_used_and_overlap_reported():
    mask = np.zeros((H, W), np.uint8)
    mask[H // 2:] = 255
    _, rep = overlay_text(_uniform(255), OverlaySpec(HEADLINE, placement="bottom"), subject_mask=mask)
    assert rep["placement"] == "bottom" and rep["subject_overlap"] > 0.5


def test_everything_stays_inside_a_custom_safe_box():
    before = _noise()
    safe = (90, 40, 560, 330)
    logo = np.zeros((50, 50, 4), np.uint8)
    logo[..., 1] = 200
    logo[..., 3] = 255
    after, rep = overlay_text(before, OverlaySpec(HEADLINE, subcopy="지금 바로 방문하세요", logo=logo),
                              safe_box=safe)
    assert_unchanged_outside(before, after, safe)
    for box in (rep["box"], rep["logo_box"]):
        assert safe[0] <= box[0] < box[2] <= safe[2] and safe[1] <= box[1] < box[3] <= safe[3]


def test_logo_goes_in_a_corner_of_the_safe_box_clear_of_subject_and_text():
    before = _uniform(235)
    mask = np.zeros((H, W), np.uint8)
    mask[:, : W // 2] = 255                  # subject fills the left half
    yy, xx = np.mgrid[0:60, 0:90]
    logo = np.zeros((60, 90, 4), np.uint8)
    logo[..., 0] = 220
    logo[..., 3] = np.where(((xx - 45) / 45) ** 2 + ((yy - 30) / 30) ** 2 < 1, 255, 0)
    after, rep = overlay_text(before, OverlaySpec("주말 브런치 세트", logo=logo), subject_mask=mask)
    lx0, ly0, lx1, ly1 = rep["logo_box"]
    sx0, sy0 = round(0.05 * W), round(0.05 * H)
    assert (sx0 <= lx0 and sy0 <= ly0 and lx1 <= W - sx0 and ly1 <= H - sy0)
    assert lx0 == W - sx0 - (lx1 - lx0) and ly0 in (sy0, H - sy0 - (ly1 - ly0))   # a right corner
    assert not mask[ly0:ly1, lx0:lx1].any()
    tx0, ty0, tx1, ty1 = rep["box"]
    assert lx1 <= tx0 or tx1 <= lx0 or ly1 <= ty0 or ty1 <= ly0
    centre = after[(ly0 + ly1) // 2, (lx0 + lx1) // 2]
    assert centre[0] > 200 and centre[1] < 30        # the logo's red is drawn


# ------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs, field", [
    ({"headline": "   "}, "headline"),
    ({"text_color": "red"}, "text_color"),
    ({"brand_colors": ["#12345G"]}, "brand_colors"),
    ({"placement": "left"}, "placement"),
    ({"max_font_px": 10}, "max_font_px"),
    ({"min_contrast": 30}, "min_contrast"),
    ({"max_lines": 0}, "max_lines"),
    ({"subcopy_ratio": 2.0}, "subcopy_ratio"),
    ({"logo": np.zeros((4, 4, 3), np.uint8)}, "logo"),
    ({"font_path": "/nonexistent/font.ttf"}, "font_path"),
])
def test_spec_validation_names_the_field(kwargs, field):
    kwargs = {"headline": "헤드라인", **kwargs}
    with pytest.raises(OverlayError, match=field):
        OverlaySpec(**kwargs)
    assert issubclass(OverlayError, ValueError)


def test_bad_inputs_name_the_argument():
    spec = OverlaySpec("헤드라인")
    with pytest.raises(OverlayError, match="rgb"):
        overlay_text(np.zeros((10, 10), np.uint8), spec)
    with pytest.raises(OverlayError, match="subject_mask"):
        overlay_text(_uniform(0), spec, subject_mask=np.zeros((5, 5), np.uint8))
    with pytest.raises(OverlayError, match="safe_box"):
        overlay_text(_uniform(0), spec, safe_box=(10, 10, 5, 700))
