"""Free-tier watermark: downscale, then a sparse diagonal repeated text mark.

The image is shrunk (area interpolation, never enlarged) so its longer side is at most ``max_side``:
the longer side becomes exactly ``max_side`` and the shorter one ``round_half_up(short * max_side /
long)`` (at least 1). The mark is the text in white with a dark outline, rotated 30 degrees and tiled
in a staggered grid at ``opacity``, so it shows on light and dark images and cannot be cropped away,
while its thin strokes cover only a small part of the picture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from fitad.fonts import load_font

ANGLE_DEG = 30
FILL = (255, 255, 255)
STROKE = (20, 20, 20)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after shrinking so the longer side is at most ``max_side`` (never enlarged)."""
    long_side, short_side = max(width, height), min(width, height)
    if max_side is None or long_side <= max_side:
        return width, height
    short_new = max(1, (2 * short_side * max_side + long_side) // (2 * long_side))  # round half up
    return (max_side, short_new) if width >= height else (short_new, max_side)


def _check(rgb, text, opacity, max_side) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"rgb: expected an HxWx3 uint8 array, got {desc}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text: must be a non-empty string, got {text!r}")
    if isinstance(opacity, bool) or not isinstance(opacity, (int, float, np.floating)) \
            or not math.isfinite(float(opacity)) or not 0.0 < float(opacity) <= 1.0:
        raise ValueError(f"opacity: must be a number in (0, 1], got {opacity!r}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                                 or max_side < 16):
        raise ValueError(f"max_side: must be None or an integer >= 16, got {max_side!r}")


def _mark_tile(text: str, size: int, stroke: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotated (fill, stroke) coverage masks of one mark, float 0..1."""
    font = load_font(size)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    w, h = right - left + 2, bottom - top + 2
    masks = []
    for stroke_width in (0, stroke):
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).text((1 - left, 1 - top), text, font=font, fill=255,
                                 stroke_width=stroke_width, stroke_fill=255)
        masks.append(img.rotate(ANGLE_DEG, resample=Image.Resampling.BICUBIC, expand=True))
    return tuple(np.asarray(m, dtype=np.float32) / 255.0 for m in masks)


def add_watermark(rgb: np.ndarray, *, text: str = "Fit-AD", opacity: float = 0.5,
                  max_side: int | None = 720) -> tuple[np.ndarray, dict]:
    """Downscaled copy of ``rgb`` (HxWx3 uint8) with a visible repeated text mark.

    Returns the image and ``{"watermark": text, "size": [w, h], "scaled_from": [w, h],
    "opacity": opacity}``. ``rgb`` is not modified.
    """
    _check(rgb, text, opacity, max_side)
    text = text.strip()
    h0, w0 = rgb.shape[:2]
    w, h = scaled_size(w0, h0, max_side)
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (w, h) != (w0, h0) else rgb.copy()

    size = max(10, round(0.05 * min(w, h)))
    stroke = max(1, round(size / 12))
    fill_tile, stroke_tile = _mark_tile(text, size, stroke)
    th, tw = fill_tile.shape
    fill = np.zeros((h, w), np.float32)
    outline = np.zeros((h, w), np.float32)
    step_x = max(tw + size * 3, w // 2)
    step_y = max(th + size * 2, h // 3)
    for row, y in enumerate(range(-th // 2, h, step_y)):
        shift = (step_x // 2) if row % 2 else 0
        for x in range(-tw // 2 - step_x + shift, w, step_x):
            ys, xs = max(0, y), max(0, x)
            ye, xe = min(h, y + th), min(w, x + tw)
            if ye <= ys or xe <= xs:
                continue
            sub = (slice(ys - y, ye - y), slice(xs - x, xe - x))
            np.maximum(fill[ys:ye, xs:xe], fill_tile[sub], out=fill[ys:ye, xs:xe])
            np.maximum(outline[ys:ye, xs:xe], stroke_tile[sub], out=outline[ys:ye, xs:xe])

    out = img.astype(np.float32)
    a = (outline * float(opacity))[..., None]
    out = out * (1.0 - a) + np.asarray(STROKE, np.float32) * a
    a = (fill * float(opacity))[..., None]
    out = out * (1.0 - a) + np.asarray(FILL, np.float32) * a
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    report = {"watermark": text, "size": [w, h], "scaled_from": [w0, h0], "opacity": float(opacity)}
    return out, report
