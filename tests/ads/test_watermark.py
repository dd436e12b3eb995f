"""Free-tier watermark: exact downscaled size, area interpolation, a visible but sparse mark."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from fitad.ads.watermark import add_watermark


def expected_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    long_side, short_side = max(w, h), min(w, h)
    if max_side is None or long_side <= max_side:
        return w, h
    short_new = max(1, int(Fraction(short_side * max_side, long_side) + Fraction(1, 2)))
    return (max_side, short_new) if w >= h else (short_new, max_side)


def _photo(w, h, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return base


@pytest.mark.parametrize("w, h", [(1600, 900), (900, 1600), (1001, 333), (333, 1001), (721, 100), (2000, 2000)])
def test_size_is_downscaled_with_aspect_kept(w, h):
    img = _photo(w, h)
    out, rep = add_watermark(img)
    ew, eh = expected_size(w, h, 720)
    assert out.shape == (eh, ew, 3) and out.dtype == np.uint8
    assert rep["size"] == [ew, eh] and rep["scaled_from"] == [w, h] and rep["watermark"] == "Fit-AD"
    assert max(ew, eh) == 720
    assert abs(ew / eh - w / h) <= (w / h) / min(ew, eh)     # within one pixel of the exact aspect
    # area interpolation: pixels the mark left alone equal cv2's INTER_AREA result
    ref = cv2.resize(img, (ew, eh), interpolation=cv2.INTER_AREA)
    assert (out == ref).all(-1).mean() > 0.6


@pytest.mark.parametrize("w, h, max_side", [(300, 200, 720), (720, 400, 720), (1500, 900, None)])
def test_never_upscaled(w, h, max_side):
    img = _photo(w, h, seed=1)
    keep = img.copy()
    out, rep = add_watermark(img, max_side=max_side)
    assert out.shape == img.shape and rep["size"] == [w, h] == rep["scaled_from"]
    np.testing.assert_array_equal(img, keep)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_mark_is_visible_but_sparse(value):
    img = np.full((400, 600, 3), value, np.uint8)
    out, _ = add_watermark(img, text="Fit-AD 무료")
    changed = (out.astype(int) - img).__abs__().max(-1) > 40
    assert 0.01 < changed.mean() < 0.35
    # repeated across the picture: marks in both halves, both ways
    assert changed[:, :300].any() and changed[:, 300:].any()
    assert changed[:200].any() and changed[200:].any()


def test_opacity_scales_the_mark():
    img = np.full((300, 300, 3), 128, np.uint8)
    weak, _ = add_watermark(img, opacity=0.2)
    strong, _ = add_watermark(img, opacity=0.9)
    assert np.abs(strong.astype(int) - 128).sum() > 3 * np.abs(weak.astype(int) - 128).sum()


@pytest.mark.parametrize("kwargs, name", [
    ({"opacity": 0}, "opacity"),
    ({"opacity": 1.5}, "opacity"),
    ({"opacity": float("nan")}, "opacity"),
    ({"max_side": 0}, "max_side"),
    ({"max_side": 100.5}, "max_side"),
    ({"text": "  "}, "text"),
])
def test_arguments_are_validated(kwargs, name):
    with pytest.raises(ValueError, match=name):
        add_watermark(np.zeros((50, 50, 3), np.uint8), **kwargs)
    with pytest.raises(ValueError, match="rgb"):
        add_watermark(np.zeros((50, 50, 3), np.float32))
