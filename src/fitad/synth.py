"""Synthetic manga/webtoon panels with exact ground truth for text detection and subject segmentation.

Each panel has a background (plain, screentone dots or cluttered line art), one or more cel-shaded
figures built from flat-filled, dark-outlined shapes, speech bubbles with Korean or English lines,
loose sound-effect lettering and a panel border. Every element is drawn by this module, so the
ground truth is exact: text boxes come from the rendered glyph pixels, and a figure's mask is the set
of pixels drawn for it that are still visible after everything on top of it (bubbles, lettering,
border) has been drawn. An ``owner`` map (0 = background, 1..k = figures, 255 = overlays) records which
element painted each pixel last.

Panels are deterministic per seed: panel ``i`` uses ``numpy.random.default_rng(seed + i)`` so it does
not depend on how many panels are made, and the same seed gives byte-identical PNG and JSON files.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from fitad.fsutil import atomic_write_bytes, atomic_write_json
from fitad.config import SynthConfig
from fitad.fonts import load_font

BACKGROUNDS = ("plain", "screentone", "cluttered")
OVERLAY = 255                      # owner id of bubbles, lettering, gutter and border
TOTAL_FIGURE_LOSS = 0.2            # texts together may hide at most this share of a figure
Color = tuple[int, int, int]
Box = tuple[int, int, int, int]    # x0, y0, x1, y1 with x1/y1 exclusive

BUBBLE_LINES = {
    "ko": [
        "안녕하세요!", "뭐라고?!", "잠깐만 기다려!", "정말 괜찮아?", "오늘은 날씨가 좋네",
        "어디 가는 거야?", "배고파 죽겠어...", "같이 가자!", "그럴 리가 없어", "믿을 수 없어!",
        "내가 할게", "고마워, 진짜로", "조심해!", "이번엔 절대 안 져", "왜 이제 왔어?",
        "벌써 끝났어?", "괜찮아, 걱정 마", "이거 내 거야!", "다시 한 번 해 보자", "비밀이야",
        "늦었잖아!", "도와줘!", "좋아, 가자!", "무슨 소리야?", "진짜 맛있다!", "할 수 있어!",
        "내일 또 만나", "그게 다야?", "미안해...", "정말 예쁘다", "어서 와!", "누구세요?",
    ],
    "en": [
        "WHAT?!", "WAIT FOR ME!", "ARE YOU OKAY?", "LET'S GO!", "NO WAY...", "I'LL DO IT.",
        "THANK YOU!", "WATCH OUT!", "WHERE ARE YOU GOING?", "I'M SO HUNGRY", "THAT'S IMPOSSIBLE!",
        "NOT THIS TIME!", "WHY ARE YOU LATE?", "IT'S A SECRET.", "HELP ME!", "SEE YOU TOMORROW",
        "IS THAT ALL?", "SORRY...", "YOU CAN DO IT!", "THIS IS MINE!", "HEY! OVER HERE!",
        "WHAT WAS THAT?", "LEAVE IT TO ME", "IT'S DELICIOUS!", "AGAIN? REALLY?", "GOOD MORNING!",
    ],
}
SFX_WORDS = {
    "ko": ["쾅!", "두근두근", "쿵", "휙!", "콰광!", "스윽", "짜잔!", "펑!", "쨍그랑", "와아아!",
           "번쩍", "쿵쾅", "드르륵", "털썩", "후다닥"],
    "en": ["BOOM!", "BAM!", "WHOOSH", "CRASH!", "THUD", "ZAP!", "POW!", "KRAK!", "DOKI DOKI",
           "SLAM!", "WHAM!", "SNAP!"],
}


# ---------------------------------------------------------------- small helpers

def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _shade(color: Color, factor: float) -> Color:
    """Darken (factor < 1) or lighten (factor > 1, towards white) a color."""
    if factor <= 1:
        return tuple(int(c * factor) for c in color)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * (factor - 1)) for c in color)  # type: ignore[return-value]


def _gray(value: float) -> Color:
    v = int(round(value))
    return (v, v, v)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float,
                    n: int) -> list[tuple[float, float]]:
    """Points on an ellipse from angle t0 to t1 (degrees; y grows downwards, 270 = top)."""
    ts = np.radians(np.linspace(t0, t1, n))
    return [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in ts]


def _limb(p: tuple[float, float], q: tuple[float, float], w0: float,
          w1: float) -> list[tuple[float, float]]:
    """Quad around segment p→q, half-width w0 at p and w1 at q (a tapered limb)."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    return [(p[0] + nx * w0, p[1] + ny * w0), (q[0] + nx * w1, q[1] + ny * w1),
            (q[0] - nx * w1, q[1] - ny * w1), (p[0] - nx * w0, p[1] - ny * w0)]


def mask_bbox(mask: np.ndarray) -> Box | None:
    """Tight ``(x0, y0, x1, y1)`` of the non-zero pixels (x1/y1 exclusive), or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _boxes_overlap(a: Box, b: Box, pad: int = 0) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


# ---------------------------------------------------------------- panel geometry

def panel_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """A (width, height) within [min_side, max_side]: square, portrait, landscape or a tall strip."""
    kind = _pick(rng, ("square", "portrait", "landscape", "strip"))
    ratio = {"square": 1.0, "portrait": _uniform(rng, 1.25, 1.5),
             "landscape": _uniform(rng, 1.25, 1.6), "strip": _uniform(rng, 1.8, 2.2)}[kind]
    long_side = int(rng.integers(min_side, max_side + 1))
    short_side = int(round(long_side / ratio))
    if short_side < min_side:      # keep both sides in range; the ratio shrinks instead
        short_side = min_side
        long_side = min(max_side, max(long_side, int(round(min_side * ratio))))
    if kind == "square":
        return long_side, long_side
    return (long_side, short_side) if kind == "landscape" else (short_side, long_side)


# ---------------------------------------------------------------- backgrounds

def _paper_color(rng: np.random.Generator, mono: bool) -> Color:
    if mono:
        return _gray(_uniform(rng, 238, 255))
    return tuple(int(255 - rng.integers(0, 28)) for _ in range(3))  # type: ignore[return-value]


def _line_color(rng: np.random.Generator, mono: bool) -> Color:
    """Background line art is lighter than figure outlines (which are near black)."""
    if mono:
        return _gray(_uniform(rng, 115, 185))
    base = _uniform(rng, 115, 180)
    tint = rng.integers(-20, 21, size=3)
    return tuple(int(np.clip(base + t, 95, 200)) for t in tint)  # type: ignore[return-value]


def screentone(width: int, height: int, pitch: float, angle_deg: float,
               radius: np.ndarray | float) -> np.ndarray:
    """Boolean dot pattern of a halftone screen; ``radius`` may vary per pixel for gradients."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a = math.radians(angle_deg)
    u = (x * math.cos(a) + y * math.sin(a)) / pitch
    v = (-x * math.sin(a) + y * math.cos(a)) / pitch
    dist = np.hypot(u - np.round(u), v - np.round(v)) * pitch
    return dist < radius


def _draw_screentone(rng: np.random.Generator, img: Image.Image, mono: bool) -> Image.Image:
    w, h = img.size
    pitch = _uniform(rng, 6.0, 10.0)
    if rng.random() < 0.5:
        radius: np.ndarray | float = pitch * _uniform(rng, 0.18, 0.32)
    else:                          # tone gradient along y, as on a sky or a floor
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        if rng.random() < 0.5:
            t = 1.0 - t
        radius = pitch * (0.08 + 0.3 * t)
    dots = screentone(w, h, pitch, _pick(rng, (45.0, 0.0, 30.0)), radius)
    if rng.random() < 0.4:         # tone only on one band of the panel
        band = np.zeros((h, 1), dtype=bool)
        lo, hi = sorted(rng.uniform(0, 1, size=2))
        band[int(lo * h):max(int(hi * h), int(lo * h) + h // 4)] = True
        dots &= band
    arr = np.asarray(img).copy()
    arr[dots] = _gray(_uniform(rng, 110, 170)) if mono else _shade(_line_color(rng, False), 0.95)
    return Image.fromarray(arr)


def _draw_clutter(rng: np.random.Generator, img: Image.Image, mono: bool) -> None:
    """Thin, light line art: perspective lines, buildings with windows, hatching, focus lines."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    horizon = int(h * _uniform(rng, 0.35, 0.7))
    draw.line([(0, horizon), (w, horizon)], fill=_line_color(rng, mono), width=2)
    vx = _uniform(rng, 0.2, 0.8) * w
    for _ in range(int(rng.integers(6, 16))):         # perspective lines to a vanishing point
        ex = _uniform(rng, -0.5, 1.5) * w
        draw.line([(vx, horizon), (ex, h)], fill=_line_color(rng, mono), width=1)
    for _ in range(int(rng.integers(3, 8))):          # buildings / furniture with windows
        bw, bh = _uniform(rng, 0.1, 0.3) * w, _uniform(rng, 0.15, 0.5) * h
        x0 = _uniform(rng, -0.05, 1.0) * w
        y1 = horizon + _uniform(rng, -0.05, 0.1) * h
        fill = _gray(_uniform(rng, 215, 240)) if mono else _shade(_paper_color(rng, False), 0.93)
        box = (x0, y1 - bh, x0 + bw, y1)
        draw.rectangle(box, fill=fill if rng.random() < 0.6 else None,
                       outline=_line_color(rng, mono), width=int(rng.integers(1, 3)))
        step = _uniform(rng, 14, 30)
        for wy in np.arange(box[1] + step * 0.5, y1 - step, step):
            for wx in np.arange(x0 + step * 0.4, x0 + bw - step * 0.6, step):
                draw.rectangle((wx, wy, wx + step * 0.45, wy + step * 0.5),
                               outline=_line_color(rng, mono), width=1)
    for _ in range(int(rng.integers(1, 4))):          # hatching patches
        x0, y0 = _uniform(rng, 0, 0.8) * w, _uniform(rng, 0, 0.8) * h
        pw, ph = _uniform(rng, 0.1, 0.3) * w, _uniform(rng, 0.08, 0.2) * h
        gap = _uniform(rng, 5, 9)
        color = _line_color(rng, mono)
        for off in np.arange(0, pw + ph, gap):
            draw.line([(x0 + off, y0), (x0 + off - ph, y0 + ph)], fill=color, width=1)
    for _ in range(int(rng.integers(2, 6))):          # round things: trees, lamps, clouds
        cx, cy, r = _uniform(rng, 0, 1) * w, _uniform(rng, 0, 1) * h, _uniform(rng, 0.03, 0.1) * w
        draw.ellipse((cx - r, cy - r * 0.8, cx + r, cy + r * 0.8), outline=_line_color(rng, mono),
                     width=int(rng.integers(1, 3)))
    if rng.random() < 0.3:                            # manga focus lines around the centre
        cx, cy = w * _uniform(rng, 0.3, 0.7), h * _uniform(rng, 0.3, 0.7)
        r_in = min(w, h) * _uniform(rng, 0.35, 0.45)
        for ang in rng.uniform(0, 2 * math.pi, size=int(rng.integers(30, 70))):
            r_out = math.hypot(w, h)
            draw.line([(cx + r_in * math.cos(ang), cy + r_in * math.sin(ang)),
                       (cx + r_out * math.cos(ang), cy + r_out * math.sin(ang))],
                      fill=_line_color(rng, mono), width=1)


def draw_background(rng: np.random.Generator, size: tuple[int, int], kind: str,
                    mono: bool) -> Image.Image:
    """A ``plain``, ``screentone`` or ``cluttered`` panel background."""
    w, h = size
    top, bottom = _paper_color(rng, mono), _paper_color(rng, mono)
    if rng.random() < 0.3:         # soft vertical gradient
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        arr = (np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t)
        img = Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8))
    else:
        img = Image.new("RGB", size, top)
    if kind == "screentone":
        img = _draw_screentone(rng, img, mono)
    elif kind == "cluttered":
        _draw_clutter(rng, img, mono)
    return img


# ---------------------------------------------------------------- figures

@dataclass
class Part:
    """One shape of a figure in head units (head height = 1; y grows downwards)."""
    kind: str                              # "poly", "ellipse" or "line"
    points: list[tuple[float, float]]      # polygon/line points, or the two corners of an ellipse
    fill: Color | None
    outline: Color | None = None           # drawn with the figure's outline width
    line_width: float = 0.0                # for "line": width in head units


@dataclass
class FigureSpec:
    parts: list[Part]
    head: tuple[float, float]              # head centre, head units
    bust_crop: float | None = None         # bust shot: only y < bust_crop lies inside the panel

    def point_extent(self) -> tuple[float, float, float, float]:
        """Bounds of all shape points (ignoring outlines and the bust crop), head units."""
        xs = [p[0] for part in self.parts for p in part.points]
        ys = [p[1] for part in self.parts for p in part.points]
        return min(xs), min(ys), max(xs), max(ys)


def _figure_palette(rng: np.random.Generator, mono: bool) -> dict[str, Color]:
    if mono:
        clothes = [35, 80, 125, 170, 215]
        top = _gray(_pick(rng, clothes))
        return {"skin": _gray(_uniform(rng, 244, 255)), "hair": _gray(_pick(rng, (25, 55, 110, 230))),
                "top": top, "bottom": _gray(_pick(rng, clothes)), "shoes": _gray(_pick(rng, (25, 60, 200))),
                "eyes": _gray(20), "line": _gray(_uniform(rng, 0, 25))}

    def hsv(h: float, s: float, v: float) -> Color:
        return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]

    skins = [(255, 226, 204), (246, 208, 180), (228, 184, 150), (196, 148, 112), (150, 106, 76)]
    hairs = [(30, 28, 34), (84, 52, 36), (150, 96, 52), (232, 200, 120), (236, 150, 180),
             (80, 110, 200), (200, 200, 210), (180, 40, 50)]
    return {"skin": _pick(rng, skins), "hair": _pick(rng, hairs),
            "top": hsv(_uniform(rng, 0, 1), _uniform(rng, 0.3, 0.8), _uniform(rng, 0.35, 0.9)),
            "bottom": hsv(_uniform(rng, 0, 1), _uniform(rng, 0.2, 0.7), _uniform(rng, 0.2, 0.7)),
            "shoes": _pick(rng, [(40, 36, 40), (120, 70, 40), (235, 235, 235), (180, 40, 40)]),
            "eyes": hsv(_uniform(rng, 0, 1), 0.6, 0.3), "line": _gray(_uniform(rng, 0, 30))}


def _hair_parts(rng: np.random.Generator, pal: dict[str, Color]) -> tuple[list[Part], list[Part]]:
    """(parts behind the head, parts in front of it) for one of four hair styles."""
    hair, line = pal["hair"], pal["line"]
    style = _pick(rng, ("short", "long", "spiky", "buns"))
    back: list[Part] = []
    if style == "long":
        length = _uniform(rng, 1.6, 3.0)
        back.append(Part("poly", _ellipse_points(0, 0.55, 0.52, 0.58, 180, 360, 13)
                         + [(0.6, length), (-0.6, length)], hair, line))
    if style == "buns":
        for side in (-1, 1):
            back.append(Part("ellipse", [(side * 0.42 - 0.2, -0.12), (side * 0.42 + 0.2, 0.28)],
                             hair, line))
    if style == "spiky":
        arc = _ellipse_points(0, 0.55, 0.5, 0.56, 180, 360, 15)
        cap = [(x * (1.0 + 0.3 * (i % 2)) , 0.55 + (y - 0.55) * (1.0 + 0.35 * (i % 2)))
               for i, (x, y) in enumerate(arc)]
    else:
        cap = _ellipse_points(0, 0.55, 0.49, 0.56, 180, 360, 15)
    bangs = [(0.49, 0.95), (0.36, 0.92)]
    n_bangs = int(rng.integers(3, 7))
    for i in range(1, n_bangs * 2):
        x = 0.36 - 0.72 * i / (n_bangs * 2)
        bangs.append((x, 0.5 if i % 2 else _uniform(rng, 0.26, 0.34)))
    bangs += [(-0.36, 0.92), (-0.49, 0.95)]
    front = [Part("poly", cap + bangs, hair, line),
             Part("line", [(-0.22, 0.2), (-0.05, 0.12)], _shade(hair, 1.5), line_width=0.05)]
    return back, front


def _circle(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx - r, cy - r), (cx + r, cy + r)]


def _leg_parts(rng: np.random.Generator, pal: dict[str, Color], dress: bool) -> list[Part]:
    """Thigh and shin quads from the hips with a knee joint, and shoes at the ankles."""
    parts: list[Part] = []
    line = pal["line"]
    shin_color = pal["skin"] if dress else pal["bottom"]
    for side in (-1, 1):
        hip = (side * 0.22, 3.15)
        a = math.radians(_uniform(rng, -3, 18))
        knee = (hip[0] + side * 1.45 * math.sin(a), hip[1] + 1.45 * math.cos(a))
        b = a - math.radians(_uniform(rng, 0, 15))
        ankle = (knee[0] + side * 1.4 * math.sin(b), knee[1] + 1.4 * math.cos(b))
        parts += [Part("poly", _limb(knee, ankle, 0.21, 0.15), shin_color, line),
                  Part("ellipse", _circle(*knee, 0.21), shin_color, line),
                  Part("poly", _limb(hip, knee, 0.28, 0.21), shin_color, line),
                  Part("ellipse", [(ankle[0] + side * 0.08 - 0.2, ankle[1] - 0.06),
                                   (ankle[0] + side * 0.08 + 0.2, ankle[1] + 0.14)], pal["shoes"], line)]
    return parts


def _torso_parts(rng: np.random.Generator, pal: dict[str, Color], dress: bool) -> tuple[list[Part], float]:
    """Neck, torso with a cel shadow on one side, collar and maybe a skirt; returns the shoulder width."""
    line, skin = pal["line"], pal["skin"]
    sw, ww, hw = _uniform(rng, 0.5, 0.7), _uniform(rng, 0.4, 0.5), _uniform(rng, 0.46, 0.56)
    torso = [(-sw, 1.38), (sw, 1.38), (sw + 0.05, 1.58), (ww, 2.7), (hw, 3.25), (-hw, 3.25),
             (-ww, 2.7), (-sw - 0.05, 1.58)]
    side = 1 if rng.random() < 0.5 else -1
    shadow = [(side * x, y) for x, y in
              [(sw * 0.35, 1.38), (sw, 1.38), (sw + 0.05, 1.58), (ww, 2.7), (hw, 3.25), (hw * 0.5, 3.25)]]
    parts = [Part("poly", _limb((0, 1.0), (0, 1.45), 0.11, 0.12), skin, line),
             Part("poly", torso, pal["top"], line),
             Part("poly", shadow, _shade(pal["top"], 0.75)),
             Part("poly", torso, None, line),              # the shadow covered one side's outline
             Part("poly", [(-0.16, 1.38), (0.16, 1.38), (0, 1.62)], skin, line)]
    if dress:
        parts.append(Part("poly", [(-ww - 0.03, 2.65), (ww + 0.03, 2.65), (0.9, 4.1), (-0.9, 4.1)],
                          pal["bottom"], line))
    return parts, sw


def _arm_parts(rng: np.random.Generator, pal: dict[str, Color], shoulder_width: float) -> list[Part]:
    """Upper arm, elbow joint, forearm and hand on each side; arms stay mostly close to the body."""
    parts: list[Part] = []
    line, skin = pal["line"], pal["skin"]
    sleeve = pal["top"] if rng.random() < 0.5 else skin
    for side in (-1, 1):
        shoulder = (side * (shoulder_width - 0.1), 1.5)
        raised = rng.random() < 0.2
        a = math.radians(_uniform(rng, 40, 100) if raised else _uniform(rng, 5, 35))
        elbow = (shoulder[0] + side * 1.15 * math.sin(a), shoulder[1] + 1.15 * math.cos(a))
        # a raised arm waves with the forearm up; a lowered one bends towards the body
        b = math.radians(_uniform(rng, 140, 180)) if raised else a + math.radians(_uniform(rng, -120, 15))
        hand = (elbow[0] + side * 1.05 * math.sin(b), elbow[1] + 1.05 * math.cos(b))
        parts += [Part("ellipse", _circle(*elbow, 0.16), sleeve, line),
                  Part("poly", _limb(elbow, hand, 0.16, 0.13), sleeve, line),
                  Part("poly", _limb(shoulder, elbow, 0.2, 0.16), pal["top"], line),
                  Part("ellipse", _circle(*hand, 0.17), skin, line)]
    return parts


def _head_parts(rng: np.random.Generator, pal: dict[str, Color], mono: bool) -> list[Part]:
    """Head with a pointed manga chin, big eyes (or closed ones), brows and a mouth."""
    line = pal["line"]
    head = [(x * (1 - 0.38 * max(0.0, (y - 0.6) / 0.5) ** 2), y)
            for x, y in _ellipse_points(0, 0.6, 0.42, 0.5, 0, 360, 32)[:-1]]
    parts = [Part("poly", head, pal["skin"], line)]
    eye_y = _uniform(rng, 0.6, 0.7)
    closed = rng.random() < 0.15
    for side in (-1, 1):
        ex = side * 0.17
        if closed:
            parts.append(Part("line", [(ex - 0.08, eye_y), (ex, eye_y + 0.04), (ex + 0.08, eye_y)],
                              line, line_width=0.04))
        else:
            parts += [Part("ellipse", [(ex - 0.075, eye_y - 0.11), (ex + 0.075, eye_y + 0.11)],
                           pal["eyes"], line),
                      Part("ellipse", [(ex - 0.02, eye_y - 0.08), (ex + 0.02, eye_y - 0.03)],
                           (255, 255, 255))]
        parts.append(Part("line", [(ex - 0.09, eye_y - 0.2), (ex + 0.08, eye_y - 0.2 - side * 0.02)],
                          line, line_width=0.03))
    if rng.random() < 0.5:
        parts.append(Part("line", [(-0.07, 0.93), (0.0, 0.95), (0.07, 0.93)], line, line_width=0.03))
    else:
        parts.append(Part("ellipse", [(-0.06, 0.88), (0.06, 0.98)], _gray(60) if mono else (150, 50, 60),
                          line))
    return parts


def figure_spec(rng: np.random.Generator, mono: bool, bust: bool) -> FigureSpec:
    """A random cel-shaded figure (hair, head, torso, arms, legs) as flat shapes with dark outlines.

    Shapes are listed back to front; units are head heights, so a full figure is about 6 heads tall.
    """
    pal = _figure_palette(rng, mono)
    back_hair, front_hair = _hair_parts(rng, pal)
    dress = rng.random() < 0.3
    torso, shoulder_width = _torso_parts(rng, pal, dress)
    parts = [*back_hair, *_leg_parts(rng, pal, dress), *torso, *_arm_parts(rng, pal, shoulder_width),
             *_head_parts(rng, pal, mono), *front_hair]
    crop = _uniform(rng, 1.9, 3.6) if bust else None
    return FigureSpec(parts, head=(0.0, 0.6), bust_crop=crop)


def render_figure(spec: FigureSpec, unit: float, origin: tuple[float, float],
                  draws: Sequence[tuple[ImageDraw.ImageDraw, bool]], flip: bool = False,
                  outline_w: int | None = None) -> None:
    """Draw ``spec`` at ``unit`` px per head unit with its (0, 0) at ``origin``.

    ``draws`` are (ImageDraw, is_mask) pairs: a mask draw paints 255 wherever the color draw paints
    anything, so the mask is exactly the painted pixel set (polygons and ellipses are not antialiased).
    """
    ox, oy = origin
    sign = -1.0 if flip else 1.0
    if outline_w is None:
        outline_w = int(np.clip(round(unit * 0.08), 4, 10))   # clutter strokes are 1-2 px

    def tr(p: tuple[float, float]) -> tuple[float, float]:
        return (ox + sign * p[0] * unit, oy + p[1] * unit)

    for part in spec.parts:
        pts = [tr(p) for p in part.points]
        for draw, is_mask in draws:
            fill = (255 if part.fill is not None else None) if is_mask else part.fill
            outline = (255 if part.outline is not None else None) if is_mask else part.outline
            if part.kind == "poly":
                draw.polygon(pts, fill=fill, outline=outline, width=outline_w)
            elif part.kind == "ellipse":
                (x0, y0), (x1, y1) = pts
                draw.ellipse((min(x0, x1), y0, max(x0, x1), y1), fill=fill, outline=outline,
                             width=outline_w)
            else:
                draw.line(pts, fill=fill, width=max(2, int(round(part.line_width * unit))),
                          joint="curve")


def measure_figure(spec: FigureSpec,
                   ref_unit: float = 40.0) -> tuple[float, tuple[float, float, float, float]]:
    """(area, (x0, y0, x1, y1)) of the part of a figure above its bust crop, in head units.

    Rasterized at a small reference scale, so outlines and the crop are accounted for exactly.
    """
    px0, py0, px1, py1 = spec.point_extent()
    pad = 0.5                                            # room for outlines
    w, h = int((px1 - px0 + 2 * pad) * ref_unit), int((py1 - py0 + 2 * pad) * ref_unit)
    ox, oy = (pad - px0) * ref_unit, (pad - py0) * ref_unit
    mask = Image.new("L", (w, h), 0)
    render_figure(spec, ref_unit, (ox, oy), [(ImageDraw.Draw(mask), True)],
                  outline_w=round(ref_unit * 0.08))
    arr = np.asarray(mask) > 0
    if spec.bust_crop is not None:
        arr = arr[:max(1, int(oy + spec.bust_crop * ref_unit))]
    x0, y0, x1, y1 = mask_bbox(arr) or (0, 0, 1, 1)
    extent = ((x0 - ox) / ref_unit, (y0 - oy) / ref_unit, (x1 - ox) / ref_unit, (y1 - oy) / ref_unit)
    return float(np.count_nonzero(arr)) / ref_unit ** 2, extent


# ---------------------------------------------------------------- text

@dataclass
class TextItem:
    text: str
    lang: str
    kind: str
    box: Box
    polygon: list[list[float]]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "lang": self.lang, "kind": self.kind, "box": list(self.box),
                "polygon": self.polygon}


def _box_polygon(box: Box) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[float(x0), float(y0)], [float(x1), float(y0)], [float(x1), float(y1)], [float(x0), float(y1)]]


def wrap_words(text: str, font: Any, max_width: float) -> list[str]:
    """Greedy word wrap of ``text`` to lines no wider than ``max_width`` (long words stay whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def render_line(text: str, font: Any, stroke: int = 0) -> Image.Image:
    """An L layer holding just ``text`` (255 = glyph; stroke widens it), cropped to its ink."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    layer = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(layer).text((2 - left, 2 - top), text, font=font, fill=255,
                               stroke_width=stroke, stroke_fill=255)
    bbox = layer.getbbox()
    return layer.crop(bbox) if bbox else layer


# ---------------------------------------------------------------- the panel

@dataclass
class Panel:
    """A panel being drawn: the image, the owner map and what has been placed so far."""
    image: Image.Image
    owner: np.ndarray
    interior: Box
    mono: bool = False
    text_gap: int = 24                                    # keeps detectors from merging texts
    texts: list[TextItem] = field(default_factory=list)
    occupied: list[Box] = field(default_factory=list)     # bubble and lettering boxes
    figure_area: list[int] = field(default_factory=list)  # area of each figure when drawn
    heads: list[tuple[float, float]] = field(default_factory=list)
    faces: list[Box] = field(default_factory=list)        # text never covers a face

    def claim(self, layer: np.ndarray, x: int, y: int, owner_id: int) -> None:
        """Mark the pixels where ``layer`` is set, placed at (x, y), as painted by ``owner_id``."""
        h, w = layer.shape
        self.owner[y:y + h, x:x + w][layer] = owner_id

    def find_spot(self, rng: np.random.Generator, w: int, h: int, margin: int, tries: int = 40,
                  max_loss: float = 0.08, top_bias: float = 1.0) -> tuple[int, int] | None:
        """A free top-left corner for a w×h box inside the interior, or None.

        Of the random candidates that overlap no other text and no face, the one hiding the fewest
        figure pixels wins; a figure may lose at most ``max_loss`` of its area to this box and
        ``TOTAL_FIGURE_LOSS`` to all boxes together, so bubbles never hide most of a figure.
        """
        ix0, iy0, ix1, iy1 = self.interior
        xs, ys = (ix0 + margin, ix1 - margin - w), (iy0 + margin, iy1 - margin - h)
        if xs[1] < xs[0] or ys[1] < ys[0]:
            return None
        ids = np.arange(len(self.figure_area) + 1)
        visible = np.bincount(self.owner.ravel(), minlength=256)[ids]
        area = np.array([1, *self.figure_area])
        best: tuple[int, tuple[int, int]] | None = None
        for _ in range(tries):
            x = int(xs[0] + rng.random() * (xs[1] - xs[0]))
            y = int(ys[0] + rng.random() ** top_bias * (ys[1] - ys[0]))
            box = (x, y, x + w, y + h)
            if any(_boxes_overlap(box, other, pad=self.text_gap) for other in self.occupied):
                continue
            if any(_boxes_overlap(box, face) for face in self.faces):
                continue
            covered = np.bincount(self.owner[y:y + h, x:x + w].ravel(), minlength=256)[ids]
            covered[0] = 0
            too_much = (covered > max_loss * area) | (visible - covered < (1 - TOTAL_FIGURE_LOSS) * area)
            if too_much[1:].any():
                continue
            if best is None or covered.sum() < best[0]:
                best = (int(covered.sum()), (x, y))
                if best[0] == 0:
                    break
        return None if best is None else best[1]


def _place_figures(rng: np.random.Generator, panel: Panel, count: int, mono: bool) -> None:
    """Draw ``count`` figures side by side (mostly with a gap), sized to ~10-45% of the panel each."""
    ix0, iy0, ix1, iy1 = panel.interior
    iw, ih = ix1 - ix0, iy1 - iy0
    # full-body figures in wide panels cannot reach 10% of the area, so those are mostly bust shots
    bust = rng.random() < (0.85 if iw > 1.15 * ih or count > 1 else 0.55)
    specs = [figure_spec(rng, mono, bust) for _ in range(count)]
    lo, hi = (0.15, 0.45) if count == 1 else (0.11, 0.30)
    units, extents = [], []
    for spec in specs:
        area, (x0, y0, x1, y1) = measure_figure(spec)
        unit = math.sqrt(_uniform(rng, lo, hi) * iw * ih / area)
        unit = min(unit, 0.92 * ih / (y1 - y0))          # the figure's visible height fits
        units.append(unit)
        extents.append((x0, y0, x1, y1))
    widths = [(e[2] - e[0]) * u for e, u in zip(extents, units)]
    gaps = [(_uniform(rng, 0.03, 0.1) * iw if rng.random() < 0.85 else -_uniform(rng, 0, 0.15) * w)
            for w in widths[1:]]
    if sum(widths) + sum(gaps) > 0.96 * iw:             # crowded: narrow the gaps before shrinking
        gaps = [min(g, 0.02 * iw) for g in gaps]
    total = sum(widths) + sum(gaps)
    if total > 0.96 * iw:                                # shrink everything to fit side by side
        k = 0.96 * iw / total
        units, widths, gaps = [u * k for u in units], [w * k for w in widths], [g * k for g in gaps]
        total *= k
    cursor = ix0 + _uniform(rng, 0.02, 1.0) * max(0.0, iw - total - 0.02 * iw)
    for i, (spec, unit, width, (x0, y0, x1, y1)) in enumerate(zip(specs, units, widths, extents)):
        flip = rng.random() < 0.5
        ox = cursor - x0 * unit if not flip else cursor + x1 * unit
        if spec.bust_crop is not None:                    # the panel edge cuts the figure
            oy = iy1 - spec.bust_crop * unit + _uniform(rng, 0, 0.05) * ih
        else:
            bottom = iy1 - _uniform(rng, 0.0, 1.0) * max(0.0, ih - (y1 - y0) * unit - 0.04 * ih)
            oy = bottom - y1 * unit
        mask = Image.new("L", panel.image.size, 0)
        render_figure(spec, unit, (ox, oy), [(ImageDraw.Draw(panel.image), False),
                                             (ImageDraw.Draw(mask), True)], flip=flip)
        panel.claim(np.asarray(mask) > 0, 0, 0, i + 1)
        panel.figure_area.append(int(np.count_nonzero(panel.owner == i + 1)))
        hx, hy = ox, oy + spec.head[1] * unit
        panel.heads.append((hx, hy))
        panel.faces.append((int(hx - 0.5 * unit), int(hy - 0.65 * unit), int(hx + 0.5 * unit) + 1,
                            int(hy + 0.55 * unit) + 1))
        cursor += width + (gaps[i] if i < len(gaps) else 0.0)


def _draw_bubble(rng: np.random.Generator, panel: Panel, font_size: int) -> None:
    """A speech bubble (ellipse, rounded box or shout burst) with one to three lines of text."""
    lang = "ko" if rng.random() < 0.55 else "en"
    font = load_font(font_size)
    ix0, iy0, ix1, iy1 = panel.interior
    max_width = max(0.42 * (ix1 - ix0), font_size * 4)
    first, second = (BUBBLE_LINES[lang][int(i)]
                     for i in rng.choice(len(BUBBLE_LINES[lang]), 2, replace=False))
    lines = wrap_words(first, font, max_width)
    if rng.random() < 0.3:                               # a second sentence if it fits in 3 lines
        more = wrap_words(second, font, max_width)
        if len(lines) + len(more) <= 3:
            lines += more
    layers = [render_line(line, font) for line in lines]
    pitch = int(font_size * 1.45)
    block_w = max(layer.width for layer in layers)
    block_h = pitch * (len(layers) - 1) + layers[-1].height
    shape = _pick(rng, ("ellipse", "ellipse", "round", "burst"))
    pad = font_size * 0.35
    if shape == "round":
        rx, ry = block_w / 2 + font_size * 0.7, block_h / 2 + font_size * 0.6
    else:
        rx, ry = (block_w / 2 + pad) * 1.45, (block_h / 2 + pad) * 1.45
    if shape == "burst":
        rx, ry = rx * 1.1, ry * 1.1
    outer = 1.28 if shape == "burst" else 1.0
    bw, bh = int(2 * rx * outer) + 4, int(2 * ry * outer) + 4
    spot = panel.find_spot(rng, bw, bh, margin=8, top_bias=2.0)
    if spot is None:
        return
    cx, cy = spot[0] + bw / 2, spot[1] + bh / 2
    ink, paper = (0, 0, 0), (255, 255, 255)
    outline_w = int(rng.integers(2, 5))
    shape_mask = Image.new("L", panel.image.size, 0)
    draws = [(ImageDraw.Draw(panel.image), False), (ImageDraw.Draw(shape_mask), True)]
    if shape != "burst" and panel.heads:                  # tail towards the nearest head
        hx, hy = min(panel.heads, key=lambda p: math.hypot(p[0] - cx, p[1] - cy))
        ang = math.atan2(hy - cy, hx - cx)
        d = (math.cos(ang), math.sin(ang))
        n = (-d[1], d[0])
        edge = (cx + rx * 0.75 * d[0], cy + ry * 0.75 * d[1])
        reach = min(rx, ry) * _uniform(rng, 0.6, 0.9)
        tip = (cx + (rx + reach) * d[0], cy + (ry + reach) * d[1])
        half = min(rx, ry) * 0.22
        tail = [(edge[0] + n[0] * half, edge[1] + n[1] * half), tip,
                (edge[0] - n[0] * half, edge[1] - n[1] * half)]
        xs, ys = [p[0] for p in tail], [p[1] for p in tail]
        tail_box = (int(min(xs)) - outline_w, int(min(ys)) - outline_w,
                    int(max(xs)) + outline_w + 1, int(max(ys)) + outline_w + 1)
        # a tail must not cut through earlier lettering or a face; the bubble then goes without one
        if not any(_boxes_overlap(tail_box, other, pad=4) for other in [*panel.occupied, *panel.faces]):
            for draw, is_mask in draws:
                draw.polygon(tail, fill=255 if is_mask else paper, outline=255 if is_mask else ink,
                             width=outline_w)
            panel.occupied.append(tail_box)
    box = (cx - rx, cy - ry, cx + rx, cy + ry)
    for draw, is_mask in draws:
        fill, outline = (255, 255) if is_mask else (paper, ink)
        if shape == "ellipse":
            draw.ellipse(box, fill=fill, outline=outline, width=outline_w)
        elif shape == "round":
            draw.rounded_rectangle(box, radius=min(rx, ry) * 0.6, fill=fill, outline=outline,
                                   width=outline_w)
        else:
            spikes = int(rng.integers(11, 18)) * 2
            pts = [(cx + rx * (outer if k % 2 else 1.0) * math.cos(2 * math.pi * k / spikes),
                    cy + ry * (outer if k % 2 else 1.0) * math.sin(2 * math.pi * k / spikes))
                   for k in range(spikes)]
            draw.polygon(pts, fill=fill, outline=outline, width=outline_w)
    panel.claim(np.asarray(shape_mask) > 0, 0, 0, OVERLAY)
    panel.occupied.append((spot[0], spot[1], spot[0] + bw, spot[1] + bh))
    top = cy - block_h / 2
    for k, layer in enumerate(layers):
        x, y = int(round(cx - layer.width / 2)), int(round(top + k * pitch))
        panel.image.paste(ink, (x, y, x + layer.width, y + layer.height), layer)
        box_i = (x, y, x + layer.width, y + layer.height)
        panel.texts.append(TextItem(lines[k], lang, "bubble", box_i, _box_polygon(box_i)))


def _sfx_layers(text: str, font: Any, stroke: int, fill: Color, edge: Color,
                angle: float) -> tuple[Image.Image, Image.Image, list[list[float]]]:
    """Outlined lettering rotated by ``angle`` degrees: (RGB, alpha, glyph polygon in layer coords)."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    tw, th = right - left, bottom - top
    side = int(math.ceil(math.hypot(tw, th))) + 8
    pos = ((side - tw) // 2 - left, (side - th) // 2 - top)
    outer = Image.new("L", (side, side), 0)
    inner = Image.new("L", (side, side), 0)
    ImageDraw.Draw(outer).text(pos, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ImageDraw.Draw(inner).text(pos, text, font=font, fill=255)
    x0, y0, x1, y1 = outer.getbbox() or (0, 0, side, side)
    t = np.asarray(inner, np.float32)[..., None] / 255.0
    rgb = np.array(fill, np.float32) * t + np.array(edge, np.float32) * (1 - t)
    color = Image.fromarray(rgb.round().astype(np.uint8))
    if angle:
        color = color.rotate(angle, resample=Image.BICUBIC)
        outer = outer.rotate(angle, resample=Image.BICUBIC)
    # Pillow rotates counter-clockwise about (side/2, side/2); map the glyph box corners the same way
    c, s, mid = math.cos(math.radians(angle)), math.sin(math.radians(angle)), side / 2
    poly = [[mid + (px - mid) * c + (py - mid) * s, mid - (px - mid) * s + (py - mid) * c]
            for px, py in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    return color, outer, poly


def _draw_sfx(rng: np.random.Generator, panel: Panel, font_size: int) -> None:
    """Loose sound-effect lettering: big, bold, outlined, sometimes rotated; may touch figures."""
    lang = "ko" if rng.random() < 0.55 else "en"
    text = _pick(rng, SFX_WORDS[lang])
    font = load_font(font_size)
    stroke = max(2, font_size // 14)
    palette = [((0, 0, 0), (255, 255, 255)), ((255, 255, 255), (0, 0, 0))]
    if not panel.mono:
        palette.append((_pick(rng, [(230, 40, 40), (250, 200, 30), (60, 120, 230), (240, 120, 30)]),
                        (0, 0, 0)))
    fill, edge = _pick(rng, palette)
    angle = 0.0 if rng.random() < 0.35 else _uniform(rng, -18, 18)
    color, alpha, poly = _sfx_layers(text, font, stroke, fill, edge, angle)
    bbox = alpha.getbbox()
    if bbox is None:
        return
    color, alpha = color.crop(bbox), alpha.crop(bbox)
    spot = panel.find_spot(rng, alpha.width, alpha.height, margin=10)
    if spot is None:
        return
    x, y = spot
    panel.image.paste(color, (x, y), alpha)
    panel.claim(np.asarray(alpha) >= 128, x, y, OVERLAY)
    box = (x, y, x + alpha.width, y + alpha.height)
    panel.occupied.append(box)
    w, h = panel.image.size
    dx, dy = x - bbox[0], y - bbox[1]
    polygon = [[round(min(max(px + dx, 0.0), w), 1), round(min(max(py + dy, 0.0), h), 1)]
               for px, py in poly]
    panel.texts.append(TextItem(text, lang, "sfx", box, polygon))


def _draw_border(panel: Panel, gutter: int, width: int) -> None:
    """White page gutter around a black panel frame; both hide whatever was drawn there."""
    w, h = panel.image.size
    draw = ImageDraw.Draw(panel.image)
    frame = np.ones((h, w), dtype=bool)
    ix0, iy0, ix1, iy1 = panel.interior
    frame[iy0:iy1, ix0:ix1] = False
    arr = np.asarray(panel.image).copy()
    arr[frame] = 255
    panel.image.paste(Image.fromarray(arr))
    draw.rectangle((gutter, gutter, w - 1 - gutter, h - 1 - gutter), outline=(0, 0, 0), width=width)
    panel.owner[frame] = OVERLAY


@dataclass
class PanelResult:
    image: Image.Image
    character_masks: list[np.ndarray]
    meta: dict[str, Any]


def render_panel(config: SynthConfig, seed: int) -> PanelResult:
    """Draw one panel from ``seed``; file names in ``meta`` are filled in by :func:`synthesize`."""
    rng = np.random.default_rng(seed)
    w, h = panel_size(rng, config.min_side, config.max_side)
    kind = BACKGROUNDS[seed % len(BACKGROUNDS)]        # cycled, so every small batch is balanced
    mono = rng.random() < 0.5
    image = draw_background(rng, (w, h), kind, mono)
    gutter = int(rng.integers(0, 20)) if rng.random() < 0.6 else 0
    border = int(rng.integers(3, 8))
    inset = gutter + border
    panel = Panel(image, np.zeros((h, w), np.uint8), (inset, inset, w - inset, h - inset), mono)
    count = int(rng.integers(1, config.max_characters + 1))
    _place_figures(rng, panel, 1 if h > 1.6 * w else count, mono)   # strips: one figure
    if rng.random() < config.text_probability:
        short = min(w, h)
        for _ in range(int(rng.integers(1, 4))):
            _draw_bubble(rng, panel, int(np.clip(short * _uniform(rng, 0.04, 0.055), 28, 48)))
        for _ in range(int(rng.integers(0, 3))):
            _draw_sfx(rng, panel, int(np.clip(short * _uniform(rng, 0.08, 0.14), 44, 140)))
    _draw_border(panel, gutter, border)
    masks, characters = [], []
    for i in range(len(panel.figure_area)):
        mask = panel.owner == i + 1
        bbox = mask_bbox(mask)
        if bbox is None:
            continue
        masks.append(mask)
        characters.append({"bbox": list(bbox), "area": int(np.count_nonzero(mask))})
    meta = {"width": w, "height": h, "seed": seed, "background": kind,
            "texts": [t.to_json() for t in panel.texts], "characters": characters}
    return PanelResult(panel.image, masks, meta)


# ---------------------------------------------------------------- writing

def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def synthesize(config: SynthConfig, out_dir: Path, progress: bool = True) -> list[Path]:
    """Write ``config.n`` panels with ground truth to ``out_dir``; returns the panel PNG paths.

    Layout: ``panel_0000.png`` (RGB), ``panel_0000.json`` (texts, characters, background),
    ``masks/panel_0000_char0.png`` (one L mask per figure) and ``masks/panel_0000_subject.png``.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"synth output {out_dir} exists and is not a folder")
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index in tqdm(range(config.n), desc="synth panels", unit="panel", disable=not progress):
        stem = f"panel_{index:04d}"
        result = render_panel(config, config.seed + index)
        subject = np.zeros((result.meta["height"], result.meta["width"]), dtype=bool)
        for k, (mask, character) in enumerate(zip(result.character_masks, result.meta["characters"])):
            rel = f"masks/{stem}_char{k}.png"
            atomic_write_bytes(out_dir / rel, _png_bytes(Image.fromarray(mask.astype(np.uint8) * 255, "L")))
            character["mask"] = rel
            subject |= mask
        atomic_write_bytes(out_dir / f"masks/{stem}_subject.png",
                     _png_bytes(Image.fromarray(subject.astype(np.uint8) * 255, "L")))
        meta = {"image": f"{stem}.png", "subject_mask": f"masks/{stem}_subject.png", **result.meta}
        atomic_write_bytes(out_dir / f"{stem}.png", _png_bytes(result.image))
        atomic_write_json(out_dir / f"{stem}.json", meta, sort_keys=True)
        written.append(out_dir / f"{stem}.png")
    return written


def background_counts(panels: Sequence[Path]) -> Counter[str]:
    """How many of ``panels`` (PNG paths) use each background kind, read from their JSON files."""
    counts: Counter[str] = Counter()
    for png in panels:
        meta = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        counts[meta["background"]] += 1
    return counts
