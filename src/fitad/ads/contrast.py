"""WCAG 2.x colour contrast: relative luminance, contrast ratio, and the contrast of text over real pixels."""

from __future__ import annotations

import re

import numpy as np

CONTRAST_PERCENTILE = 5.0
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_LUMA = np.array([0.2126, 0.7152, 0.0722])


def parse_hex(value, name: str, error: type[ValueError] = ValueError) -> tuple[int, int, int]:
    """``'#RRGGBB'`` -> (r, g, b); anything else raises ``error`` naming ``name``."""
    if not isinstance(value, str) or not _HEX.match(value):
        raise error(f"{name}: expected a colour as '#RRGGBB', got {value!r}")
    return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))


def to_hex(rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*(int(v) for v in rgb))


def _as_rgb_array(color) -> np.ndarray:
    if isinstance(color, str):
        return np.asarray(parse_hex(color, "color"), dtype=np.float64)
    arr = np.asarray(color, dtype=np.float64)
    if arr.shape[-1:] != (3,):
        raise ValueError(f"expected RGB values with a last axis of 3, got shape {arr.shape}")
    return arr


def relative_luminance(rgb):
    """WCAG 2.x relative luminance of sRGB colour(s) in 0..255 ('#RRGGBB' or an array, last axis 3).

    Returns a float for one colour, an array for many.
    """
    c = _as_rgb_array(rgb) / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = lin @ _LUMA
    return float(y) if np.ndim(y) == 0 else y


def contrast_ratio(c1, c2):
    """WCAG 2.x contrast ratio (L_lighter + 0.05) / (L_darker + 0.05), 1..21; vectorised."""
    l1, l2 = relative_luminance(c1), relative_luminance(c2)
    ratio = (np.maximum(l1, l2) + 0.05) / (np.minimum(l1, l2) + 0.05)
    return float(ratio) if np.ndim(ratio) == 0 else ratio


def measure_text_contrast(background: np.ndarray, region: np.ndarray, text_color,
                          percentile: float = CONTRAST_PERCENTILE) -> float:
    """Low percentile of the per-pixel WCAG contrast between ``text_color`` and ``background[region]``.

    ``background`` is HxWx3 (the pixels behind the text: the image, with any backdrop composited, but
    without the text itself); ``region`` a boolean/uint8 HxW mask of the pixels behind the glyphs.
    """
    mask = np.asarray(region).astype(bool)
    if mask.shape != background.shape[:2]:
        raise ValueError(f"region shape {mask.shape} does not match background {background.shape[:2]}")
    pixels = np.asarray(background, dtype=np.float64)[mask]
    if pixels.size == 0:
        raise ValueError("region is empty: no pixels to measure")
    lum_text = relative_luminance(text_color)
    lum_bg = relative_luminance(pixels)
    ratios = (np.maximum(lum_bg, lum_text) + 0.05) / (np.minimum(lum_bg, lum_text) + 0.05)
    return float(np.percentile(ratios, percentile))
