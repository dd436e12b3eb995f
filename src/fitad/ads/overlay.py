"""Headline and subcopy overlay for ad images: line breaking, auto-fit, placement and WCAG contrast.

:func:`overlay_text` draws a headline (and optional subcopy and logo) onto an RGB image:

* **Line breaking** – text is NFC-normalised, then broken at spaces first (Korean word boundaries,
  eojeol). A single word wider than the box is broken between grapheme clusters (UAX #29 rules for
  Hangul Jamo, combining marks, ZWJ and flag sequences), so a syllable block or a combining sequence
  is never split. Explicit ``"\\n"`` is respected. Closing punctuation (``, . ! ? …`` and the CJK
  forms) never starts a line; opening brackets never end one.
* **Auto-fit** – the largest font size in ``[min_font_px, max_font_px]`` at which the headline takes
  at most ``max_lines`` lines and the whole block (headline, subcopy, padding) fits in a band half as
  high as the safe box.
* **Placement** – bands at the top, centre and bottom of the safe box, each centred or (narrower)
  left/right-aligned; the one whose block overlaps the subject mask least wins (overlaps compared to
  0.01; ties go to a free logo corner, then to more room between block and subject, then bottom,
  then top). Lines are balanced: the same line count at the narrowest width that keeps it.
* **Contrast** – WCAG 2.x relative luminance and contrast ratio. The contrast of a text colour is the
  5th percentile of the per-pixel ratio between it and the pixels behind the glyphs (the glyph area
  and a thin ring around it), so a busy background is judged by its worst part. When the best colour
  stays below ``min_contrast`` a rounded backdrop is added (opacity raised until the measurement on
  the composited pixels passes; a semi-opaque backdrop also gets a thin outline in its colour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fitad.ads.contrast import (CONTRAST_PERCENTILE, contrast_ratio, measure_text_contrast, parse_hex,
                                relative_luminance, to_hex)
from fitad.ads.linebreak import NO_LINE_END, NO_LINE_START, graphemes, normalize_text, text_width, wrap_text
from fitad.fonts import default_font_path, load_font

PLACEMENTS = ("auto", "top", "center", "bottom")
WHITE = "#FFFFFF"
NEAR_BLACK = "#111111"


BAND_FRACTION = 0.5          # a candidate band is this fraction of the safe box height
NARROW_FRACTION = 0.62       # width of the left/right-aligned bands, as a fraction of the safe box
DEFAULT_FONT_FRACTION = 0.09  # default max_font_px: this fraction of the safe box height
LOGO_FRACTION = 0.16         # logo's longer side: this fraction of the safe box's shorter side
MIN_SUBCOPY_PX = 10
BACKDROP_OPACITIES = (0.65, 0.75, 0.85, 0.92, 1.0)
SEMI_OPAQUE_HEADROOM = 1.03  # a semi-opaque backdrop must beat min_contrast by 3 % (sampling noise)


# Candidate (vertical band, horizontal alignment) pairs in tie-break order: bottom, then top.
_CANDIDATES = (("bottom", "center"), ("top", "center"), ("bottom", "left"), ("bottom", "right"),
               ("top", "left"), ("top", "right"), ("center", "center"), ("center", "left"),
               ("center", "right"))


# re-exported: the overlay's measuring and breaking helpers are part of its public surface
__all__ = ["OverlayError", "OverlaySpec", "overlay_text", "PLACEMENTS", "CONTRAST_PERCENTILE", "contrast_ratio",
           "measure_text_contrast", "relative_luminance", "NO_LINE_END", "NO_LINE_START", "graphemes",
           "normalize_text", "wrap_text"]


class OverlayError(ValueError):
    """Invalid overlay input or text that cannot be laid out; the message starts with the field."""


def _parse_hex_field(value, name: str) -> tuple[int, int, int]:
    return parse_hex(value, name, OverlayError)


# ---------------------------------------------------------------------------- spec

@dataclass
class OverlaySpec:
    """What to draw and how. Validated on construction (:class:`OverlayError` naming the field)."""

    headline: str
    subcopy: str = ""
    font_path: str | Path | None = None      # None: the bundled FitadGothic Bold
    text_color: str | None = None            # '#RRGGBB', or None to choose for contrast
    brand_colors: Sequence[str] = ()         # preferred for the text or the backdrop when usable
    logo: np.ndarray | None = field(default=None, repr=False, compare=False)  # RGBA uint8
    max_font_px: int | None = None           # None: about 9 % of the safe box height
    min_font_px: int = 18
    subcopy_ratio: float = 0.55
    max_lines: int = 3
    placement: str = "auto"                  # auto | top | center | bottom
    min_contrast: float = 4.5

    def __post_init__(self):
        if not isinstance(self.headline, str) or not self.headline.strip():
            raise OverlayError("headline: must be a non-empty string")
        if not isinstance(self.subcopy, str):
            raise OverlayError(f"subcopy: must be a string, got {type(self.subcopy).__name__}")
        self.headline = normalize_text(self.headline).strip()
        self.subcopy = normalize_text(self.subcopy).strip()
        if self.font_path is not None:
            if not Path(self.font_path).is_file():
                raise OverlayError(f"font_path: file not found: {self.font_path}")
        if self.text_color is not None:
            self.text_color = to_hex(_parse_hex_field(self.text_color, "text_color"))
        if isinstance(self.brand_colors, str):
            raise OverlayError("brand_colors: expected a list of '#RRGGBB' strings, got one string")
        self.brand_colors = tuple(to_hex(_parse_hex_field(c, f"brand_colors[{i}]"))
                                  for i, c in enumerate(self.brand_colors))
        if self.logo is not None:
            logo = self.logo
            if (not isinstance(logo, np.ndarray) or logo.dtype != np.uint8 or logo.ndim != 3
                    or logo.shape[2] != 4 or logo.shape[0] < 1 or logo.shape[1] < 1):
                desc = f"{logo.dtype} {logo.shape}" if isinstance(logo, np.ndarray) else type(logo).__name__
                raise OverlayError(f"logo: expected an HxWx4 (RGBA) uint8 array, got {desc}")
        for name in ("min_font_px", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise OverlayError(f"{name}: must be a positive integer, got {value!r}")
        if self.min_font_px < 6:
            raise OverlayError(f"min_font_px: must be >= 6, got {self.min_font_px}")
        if self.max_font_px is not None:
            v = self.max_font_px
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < self.min_font_px:
                raise OverlayError(f"max_font_px: must be an integer >= min_font_px "
                                   f"({self.min_font_px}), got {v!r}")
        if not _real(self.subcopy_ratio) or not 0.2 <= self.subcopy_ratio <= 1.0:
            raise OverlayError(f"subcopy_ratio: must be in [0.2, 1.0], got {self.subcopy_ratio!r}")
        if self.placement not in PLACEMENTS:
            raise OverlayError(f"placement: must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if not _real(self.min_contrast) or not 1.0 <= self.min_contrast <= 21.0:
            raise OverlayError(f"min_contrast: must be in [1, 21] (a WCAG ratio), got {self.min_contrast!r}")


def _real(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


# ---------------------------------------------------------------------------- layout

@dataclass
class _Layout:
    font: ImageFont.FreeTypeFont
    sub_font: ImageFont.FreeTypeFont | None
    font_px: int
    sub_px: int
    lines: list[str]
    sub_lines: list[str]
    line_h: int
    sub_line_h: int
    gap: int
    pad: int
    block_w: int
    block_h: int


def _pad(size: int) -> int:
    return max(4, round(0.4 * size))


def _line_height(font: ImageFont.FreeTypeFont, size: int) -> int:
    ascent, descent = font.getmetrics()
    return max(ascent + descent, round(1.25 * size))


def _layout(spec: OverlaySpec, size: int, band_w: int, band_h: int) -> _Layout | None:
    pad = _pad(size)
    avail = band_w - 2 * pad
    if avail <= 0:
        return None
    font = load_font(size, spec.font_path)
    lines = wrap_text(spec.headline, font, avail, max_lines=spec.max_lines)
    if lines is None:
        return None
    line_h = _line_height(font, size)
    height = 2 * pad + len(lines) * line_h
    if height > band_h:
        return None
    sub_font, sub_lines, sub_px, sub_line_h, gap = None, [], 0, 0, 0
    if spec.subcopy:
        sub_px = min(size, max(MIN_SUBCOPY_PX, round(size * spec.subcopy_ratio)))
        sub_font = load_font(sub_px, spec.font_path)
        sub_lines = wrap_text(spec.subcopy, sub_font, avail)
        if sub_lines is None:
            return None
        sub_line_h = _line_height(sub_font, sub_px)
        gap = round(0.3 * size)
        height += gap + len(sub_lines) * sub_line_h
        if height > band_h:
            return None
    widths = [text_width(font, ln) for ln in lines] + [text_width(sub_font, ln) for ln in sub_lines]
    block_w = math.ceil(max(widths)) + 2 * pad
    return _Layout(font, sub_font, size, sub_px, lines, sub_lines, line_h, sub_line_h, gap, pad,
                   block_w, height)


def _balanced(text: str, font, width: int, lines: list[str]) -> list[str]:
    """The same number of lines, as even as greedy breaking gets: the narrowest width keeping it."""
    n = len(lines)
    if n < 2:
        return lines
    lo, hi = max(1, width // n), width
    while lo < hi:
        mid = (lo + hi) // 2
        if wrap_text(text, font, mid, max_lines=n) is not None:
            hi = mid
        else:
            lo = mid + 1
    return wrap_text(text, font, hi, max_lines=n) or lines


def _rebalance(spec: OverlaySpec, layout: _Layout | None, band_w: int) -> _Layout | None:
    if layout is None:
        return None
    avail = band_w - 2 * layout.pad
    layout.lines = _balanced(spec.headline, layout.font, avail, layout.lines)
    if layout.sub_lines:
        layout.sub_lines = _balanced(spec.subcopy, layout.sub_font, avail, layout.sub_lines)
    widths = [text_width(layout.font, ln) for ln in layout.lines]
    widths += [text_width(layout.sub_font, ln) for ln in layout.sub_lines]
    layout.block_w = math.ceil(max(widths)) + 2 * layout.pad
    return layout


def _fit(spec: OverlaySpec, lo: int, hi: int, band_w: int, band_h: int) -> _Layout | None:
    """Largest size in [lo, hi] whose layout fits, with balanced lines."""
    return _rebalance(spec, _fit_size(spec, lo, hi, band_w, band_h), band_w)


def _fit_size(spec: OverlaySpec, lo: int, hi: int, band_w: int, band_h: int) -> _Layout | None:
    """Largest size in [lo, hi] whose layout fits (binary search; fitting is monotone in practice)."""
    best = _layout(spec, hi, band_w, band_h)
    if best is not None:
        return best
    hi -= 1
    while lo <= hi:
        mid = (lo + hi) // 2
        layout = _layout(spec, mid, band_w, band_h)
        if layout is not None:
            best, lo = layout, mid + 1
        else:
            hi = mid - 1
    return best


def _render_mask(layout: _Layout, align: str, stroke: int = 0) -> np.ndarray:
    """Glyph coverage (uint8) of the text block, in block coordinates; ``stroke`` widens the glyphs."""
    img = Image.new("L", (layout.block_w, layout.block_h), 0)
    draw = ImageDraw.Draw(img)
    inner_w = layout.block_w - 2 * layout.pad
    y = layout.pad
    rows = [(ln, layout.font, layout.line_h) for ln in layout.lines]
    rows += [(ln, layout.sub_font, layout.sub_line_h) for ln in layout.sub_lines]
    for idx, (line, font, line_h) in enumerate(rows):
        if idx == len(layout.lines):
            y += layout.gap
        if line:
            width = text_width(font, line)
            if align == "left":
                x = layout.pad
            elif align == "right":
                x = layout.pad + inner_w - width
            else:
                x = layout.pad + (inner_w - width) / 2
            ascent, descent = font.getmetrics()
            top = y + (line_h - ascent - descent) // 2
            kwargs = {"stroke_width": stroke, "stroke_fill": 255} if stroke else {}
            draw.text((round(x), top), line, font=font, fill=255, anchor="la", **kwargs)
        y += line_h
    return np.asarray(img)


def _rounded_rect_alpha(w: int, h: int, radius: int, ss: int = 4) -> np.ndarray:
    """Anti-aliased rounded rectangle filling a w x h box, alpha in 0..1."""
    img = Image.new("L", (w * ss, h * ss), 0)
    ImageDraw.Draw(img).rounded_rectangle((0, 0, w * ss - 1, h * ss - 1), radius=radius * ss, fill=255)
    return np.asarray(img.reduce(ss), dtype=np.float32) / 255.0


def _composite(bg: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    col = np.asarray(_parse_hex_field(color, "color") if isinstance(color, str) else color, dtype=np.float32)
    a = alpha[..., None]
    return bg * (1.0 - a) + col * a


# ---------------------------------------------------------------------------- inputs

def _check_inputs(rgb, subject_mask, safe_box):
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise OverlayError(f"rgb: expected an HxWx3 uint8 array, got {desc}")
    h, w = rgb.shape[:2]
    subject = None
    if subject_mask is not None:
        m = np.asarray(subject_mask)
        if m.ndim == 3 and m.shape[2] == 1:
            m = m[..., 0]
        if m.shape != (h, w):
            raise OverlayError(f"subject_mask: shape {m.shape} does not match the image ({h}, {w})")
        subject = (m > 127) if m.dtype != bool else m
    if safe_box is None:
        mx, my = round(0.05 * w), round(0.05 * h)
        box = (mx, my, w - mx, h - my)
    else:
        try:
            box = tuple(int(v) for v in safe_box)
        except (TypeError, ValueError):
            raise OverlayError(f"safe_box: expected (x0, y0, x1, y1) integers, got {safe_box!r}") from None
        if len(box) != 4:
            raise OverlayError(f"safe_box: expected (x0, y0, x1, y1), got {safe_box!r}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise OverlayError(f"safe_box: {box} is not a non-empty box inside the {w}x{h} image")
    return subject, box


def _overlap(subject: np.ndarray | None, rect) -> float:
    if subject is None:
        return 0.0
    x0, y0, x1, y1 = rect
    area = (x1 - x0) * (y1 - y0)
    return float(subject[y0:y1, x0:x1].sum()) / area if area else 0.0


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _logo_size(logo: np.ndarray, side: int) -> tuple[int, int]:
    lh, lw = logo.shape[:2]
    s = side / max(lh, lw)
    return max(1, round(lw * s)), max(1, round(lh * s))


def _place_logo(logo, safe, text_rect, gap, subject):
    """Best (rect, overlap) for the logo in a corner of the safe box, clear of the text block."""
    x0, y0, x1, y1 = safe
    base = LOGO_FRACTION * min(x1 - x0, y1 - y0)
    guard = (text_rect[0] - gap, text_rect[1] - gap, text_rect[2] + gap, text_rect[3] + gap)
    best = None
    for si, scale in enumerate((1.0, 0.75, 0.5)):
        lw, lh = _logo_size(logo, max(8, round(base * scale)))
        if lw > x1 - x0 or lh > y1 - y0:
            continue
        corners = ((x0, y0), (x1 - lw, y0), (x1 - lw, y1 - lh), (x0, y1 - lh))
        for ci, (cx, cy) in enumerate(corners):
            rect = (cx, cy, cx + lw, cy + lh)
            if _intersects(rect, guard):
                continue
            ov = _overlap(subject, rect)
            key = (round(ov, 2), si, ci)
            if best is None or key < best[0]:
                best = (key, rect, ov)
    return None if best is None else (best[1], best[2])


def _draw_logo(out: np.ndarray, logo: np.ndarray, rect) -> None:
    x0, y0, x1, y1 = rect
    size = (x1 - x0, y1 - y0)
    rgba = logo.astype(np.float32)
    alpha = rgba[..., 3] / 255.0
    premult = rgba[..., :3] * alpha[..., None]
    interp = cv2.INTER_AREA if size[0] < logo.shape[1] else cv2.INTER_CUBIC
    premult = cv2.resize(premult, size, interpolation=interp)
    alpha = np.clip(cv2.resize(alpha, size, interpolation=interp), 0.0, 1.0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    region = region * (1.0 - alpha[..., None]) + np.clip(premult, 0.0, 255.0)
    out[y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- colour choice

def _best_base(color: str) -> str:
    return max((WHITE, NEAR_BLACK), key=lambda c: contrast_ratio(color, c))


def _choose_style(crop, glyph, stroked, region, spec, font_px, outline_w):
    """Text colour, backdrop and outline for the block; returns (style dict, background layer)."""
    min_c = float(spec.min_contrast)
    if spec.text_color is not None:
        text_colors = [spec.text_color]
    else:
        text_colors = list(dict.fromkeys([*spec.brand_colors, WHITE, NEAR_BLACK]))
    scores = {c: measure_text_contrast(crop, region, c) for c in text_colors}
    if spec.text_color is not None:
        text = spec.text_color
    else:
        usable = [c for c in spec.brand_colors if scores[c] >= min_c]
        text = usable[0] if usable else max((WHITE, NEAR_BLACK), key=scores.__getitem__)
    before = scores[text]
    style = {"text_color": text, "contrast_before_backdrop": before, "backdrop": None, "outline": None}
    if before >= min_c:
        return style, crop

    # Backdrop pairs (text, backdrop) whose opaque contrast reaches min_contrast; brand colours first.
    if spec.text_color is not None:
        brand_pairs = [(text, b) for b in spec.brand_colors if contrast_ratio(text, b) >= min_c]
        base_pairs = [(text, _best_base(text))]
    else:
        brand_pairs = [(_best_base(b), b) for b in spec.brand_colors]
        brand_pairs += [(t, _best_base(t)) for t in spec.brand_colors]
        brand_pairs = [p for p in brand_pairs if contrast_ratio(*p) >= min_c]
        base_pairs = [(WHITE, NEAR_BLACK), (NEAR_BLACK, WHITE)]
    base_pairs = [p for p in base_pairs if contrast_ratio(*p) >= min_c]
    if not brand_pairs and not base_pairs:
        if spec.text_color is not None:
            best = max(contrast_ratio(text, WHITE), contrast_ratio(text, NEAR_BLACK))
            raise OverlayError(f"text_color: {text} cannot reach min_contrast {min_c:g} on any backdrop "
                               f"(best {best:.2f} on white or near-black); pick another colour")
        raise OverlayError(f"min_contrast: {min_c:g} is above what white on near-black reaches "
                           f"({contrast_ratio(WHITE, NEAR_BLACK):.2f})")

    h, w = glyph.shape
    radius = max(2, round(0.6 * _pad(font_px)))
    shape = _rounded_rect_alpha(w, h, radius)

    def attempt(pair):
        t, b = pair
        for opacity in BACKDROP_OPACITIES:
            bg = _composite(crop, b, shape * opacity)
            outline = None
            if opacity < 1.0:
                bg = _composite(bg, b, stroked)
                outline = {"color": b, "width": outline_w}
            c = measure_text_contrast(bg, region, t)
            if c >= (min_c if opacity >= 1.0 else min_c * SEMI_OPAQUE_HEADROOM):
                return opacity, c, outline, bg
        return None

    chosen = None
    for pair in brand_pairs:
        result = attempt(pair)
        if result is not None:
            chosen = (pair, result)
            break
    if chosen is None:
        results = [(pair, attempt(pair)) for pair in base_pairs]
        results = [(p, r) for p, r in results if r is not None]
        if not results:
            raise OverlayError(f"min_contrast: no backdrop reaches {min_c:g} behind the text")
        # least opacity wins; then the higher contrast
        chosen = min(results, key=lambda pr: (pr[1][0], -pr[1][1]))
    (t, b), (opacity, _c, outline, bg) = chosen
    style.update(text_color=t, contrast_before_backdrop=scores.get(t, measure_text_contrast(crop, region, t)),
                 backdrop={"color": b, "opacity": opacity, "radius": radius},
                 outline=outline)
    return style, bg


# ---------------------------------------------------------------------------- main entry

def overlay_text(rgb: np.ndarray, spec: OverlaySpec, *, subject_mask: np.ndarray | None = None,
                 safe_box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, dict]:
    """Draw ``spec``'s headline, subcopy and logo onto a copy of ``rgb`` (HxWx3 uint8).

    Everything stays inside ``safe_box`` (x0, y0, x1, y1; default: the image minus a 5 % margin) and
    avoids ``subject_mask`` (uint8, 255 = subject) as far as the candidate bands allow. Returns the new
    image and a report: box, placement, align, font_px, subcopy_px, lines, subcopy_lines, text_color,
    contrast (measured after drawing), contrast_before_backdrop, backdrop, outline, subject_overlap,
    logo_box, logo_subject_overlap, font.
    """
    if not isinstance(spec, OverlaySpec):
        raise OverlayError(f"spec: expected an OverlaySpec, got {type(spec).__name__}")
    subject, safe = _check_inputs(rgb, subject_mask, safe_box)
    x0, y0, x1, y1 = safe
    safe_w, safe_h = x1 - x0, y1 - y0
    band_h = int(BAND_FRACTION * safe_h)
    if spec.max_font_px is not None:
        hi = int(spec.max_font_px)
    else:
        hi = max(spec.min_font_px, round(DEFAULT_FONT_FRACTION * min(safe_h, 1.33 * safe_w)))
    lo = int(spec.min_font_px)

    narrow_w = round(NARROW_FRACTION * safe_w)
    full = _fit(spec, lo, hi, safe_w, band_h)
    narrow = _fit(spec, lo, hi, narrow_w, band_h)
    if full is None and narrow is None:
        raise OverlayError(
            f"headline: {len(spec.headline)} characters (subcopy {len(spec.subcopy)}) do not fit in "
            f"{spec.max_lines} line(s) within a {safe_w}x{band_h} px band of the safe box at any font "
            f"size from {hi} down to {lo} px; shorten the text, raise max_lines or lower min_font_px")

    # Candidate placements.
    candidates = []
    for order, (vert, align) in enumerate(_CANDIDATES):
        if spec.placement != "auto" and vert != spec.placement:
            continue
        if align == "center":
            layout = full
        else:
            layout = full if full is not None and full.block_w <= narrow_w else narrow
        if layout is None:
            continue
        bw, bh = layout.block_w, layout.block_h
        bx = {"center": x0 + (safe_w - bw) // 2, "left": x0, "right": x1 - bw}[align]
        by = {"top": y0, "center": y0 + (safe_h - bh) // 2, "bottom": y1 - bh}[vert]
        rect = (bx, by, bx + bw, by + bh)
        overlap = _overlap(subject, rect)
        # Secondary: how much subject lies just around the block (prefer breathing room).
        halo = round(0.08 * min(safe_w, safe_h)) + layout.pad
        near = _overlap(subject, (max(0, rect[0] - halo), max(0, rect[1] - halo),
                                  min(rgb.shape[1], rect[2] + halo), min(rgb.shape[0], rect[3] + halo)))
        logo_key, logo = (0, 0.0), None
        if spec.logo is not None:
            logo = _place_logo(spec.logo, safe, rect, max(4, layout.pad // 2), subject)
            logo_key = (1, 0.0) if logo is None else (0, round(logo[1], 2))
        key = (round(overlap, 2), *logo_key, round(near, 2), order)
        candidates.append((key, vert, align, layout, rect, overlap, logo))
    if spec.logo is not None and all(c[6] is None for c in candidates):
        raise OverlayError("logo: no corner of the safe box is clear of the text block; "
                           "use a larger image or safe box, or shorter text")
    _key, vert, align, layout, rect, overlap, logo = min(candidates, key=lambda c: c[0])

    # Masks of the block: glyphs, glyphs with a stroke (outline), and the region measured behind them.
    outline_w = max(1, round(layout.font_px / 20))
    glyph = _render_mask(layout, align).astype(np.float32) / 255.0
    stroked = _render_mask(layout, align, stroke=outline_w).astype(np.float32) / 255.0
    ring = outline_w + max(2, round(0.08 * layout.font_px))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    region = cv2.dilate((glyph > 0).astype(np.uint8), kernel) > 0

    bx0, by0, bx1, by1 = rect
    out = rgb.copy()
    crop = rgb[by0:by1, bx0:bx1].astype(np.float32)
    style, bg = _choose_style(crop, glyph, stroked, region, spec, layout.font_px, outline_w)
    contrast = measure_text_contrast(bg, region, style["text_color"])   # on the composited pixels
    if contrast < spec.min_contrast:   # cannot happen with the pairs above; never ship unreadable text
        raise OverlayError(f"min_contrast: measured {contrast:.2f} < {spec.min_contrast:g} after drawing")
    final = _composite(bg, style["text_color"], glyph)
    out[by0:by1, bx0:bx1] = np.clip(np.rint(final), 0, 255).astype(np.uint8)

    logo_box, logo_overlap = None, None
    if spec.logo is not None:
        _draw_logo(out, spec.logo, logo[0])
        logo_box, logo_overlap = list(logo[0]), round(logo[1], 4)

    font_file = Path(spec.font_path).name if spec.font_path is not None else default_font_path().name
    report = {
        "box": [int(v) for v in rect],
        "placement": vert,
        "align": align,
        "font_px": layout.font_px,
        "subcopy_px": layout.sub_px if layout.sub_lines else None,
        "lines": list(layout.lines),
        "subcopy_lines": list(layout.sub_lines),
        "text_color": style["text_color"],
        "contrast": round(contrast, 3),
        "contrast_before_backdrop": round(style["contrast_before_backdrop"], 3),
        "backdrop": style["backdrop"],
        "outline": style["outline"],
        "subject_overlap": round(overlap, 4),
        "logo_box": logo_box,
        "logo_subject_overlap": logo_overlap,
        "font": font_file,
    }
    return out, report
