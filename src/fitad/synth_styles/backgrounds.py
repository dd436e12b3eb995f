"""Panel backgrounds with structure: line-art city blocks, focus/action lines, rooms, skies, screentone.

Each painter takes ``(rng, height, width)`` and returns an RGB uint8 array for the inside of the
frame. Backgrounds are anti-aliased (they never become masks), and many are dark-outlined on purpose
so that a subject cropper cannot tell figures from scenery by the mere presence of line art.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

KINDS = ("city", "speedlines", "interior", "sky", "halftone", "plain")
AA = cv2.LINE_AA


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _ink(rng: np.random.Generator) -> tuple[int, int, int]:
    """A near-black line colour (slightly warm or cool, like printed ink)."""
    base = int(rng.integers(15, 45))
    return (base + int(rng.integers(0, 12)), base, base + int(rng.integers(0, 12)))


def _tone(rng: np.random.Generator, mono: bool, low: int = 150, high: int = 245) -> tuple[int, int, int]:
    """A fill colour: a grey when monochrome, else a muted colour."""
    if mono:
        grey = int(rng.integers(low, high))
        return (grey, grey, grey)
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _gradient(height: int, width: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.repeat(np.rint(column).astype(np.uint8), width, axis=1)


def _pt(x: float, y: float) -> tuple[int, int]:
    return (int(round(x)), int(round(y)))


# ------------------------------------------------------------------------------------------- city

def _building(img, rng, x0, top, width, bottom, fill, ink, line, mono):
    cv2.rectangle(img, (x0, top), (x0 + width, bottom), fill, -1)
    cv2.rectangle(img, (x0, top), (x0 + width, bottom), ink, line, AA)
    parapet = max(4, width // 18)
    cv2.line(img, (x0, top + parapet), (x0 + width, top + parapet), ink, max(1, line - 1), AA)
    if top > 30 and rng.random() < 0.6:  # rooftop clutter: antenna or water tank
        if rng.random() < 0.5:
            ax = x0 + int(width * _u(rng, 0.2, 0.8))
            cv2.line(img, (ax, top), (ax, top - int(width * 0.3)), ink, line, AA)
            cv2.line(img, (ax - 8, top - int(width * 0.2)), (ax + 8, top - int(width * 0.2)), ink, line, AA)
        else:
            tx, tw = x0 + int(width * 0.55), max(10, width // 5)
            cv2.rectangle(img, (tx, top - tw), (tx + tw, top - tw // 3), fill, -1)
            cv2.rectangle(img, (tx, top - tw), (tx + tw, top - tw // 3), ink, line, AA)
            cv2.line(img, (tx + 2, top - tw // 3), (tx + 2, top), ink, line, AA)
            cv2.line(img, (tx + tw - 2, top - tw // 3), (tx + tw - 2, top), ink, line, AA)
    cell_w = int(_u(rng, 0.13, 0.25) * width) + 6
    cell_h = int(cell_w * _u(rng, 0.9, 1.6))
    lit = _tone(rng, mono, 200, 255)
    dark = _tone(rng, mono, 70, 140)
    for wy in range(top + parapet + cell_h // 3, bottom - cell_h // 2, cell_h):
        for wx in range(x0 + cell_w // 3, x0 + width - cell_w // 2, cell_w):
            corner1 = (wx + 2, wy + 2)
            corner2 = (wx + cell_w - cell_w // 3, wy + cell_h - cell_h // 3)
            cv2.rectangle(img, corner1, corner2, lit if rng.random() < 0.55 else dark, -1)
            cv2.rectangle(img, corner1, corner2, ink, max(1, line - 1), AA)


def _city(rng, height, width):
    mono = rng.random() < 0.5
    sky = (255, 255, 255) if mono else (int(rng.integers(200, 235)), int(rng.integers(220, 245)), 252)
    img = _gradient(height, width, sky, (250, 250, 250))
    ink = _ink(rng)
    line = max(2, round(min(height, width) / 320))
    x = -int(rng.integers(0, width // 8 + 1))
    while x < width:  # far row: pale silhouettes, thin outlines
        bw = int(width * _u(rng, 0.08, 0.2))
        top = int(height * _u(rng, 0.1, 0.5))
        far = _tone(rng, mono, 205, 240)
        cv2.rectangle(img, (x, top), (x + bw, height + 5), far, -1)
        cv2.rectangle(img, (x, top), (x + bw, height + 5), (150, 150, 160), 1, AA)
        x += bw + int(rng.integers(-bw // 4, bw // 5 + 1))
    x = -int(rng.integers(0, width // 10 + 1))
    while x < width:  # near row: touching the bottom, some running off the top
        bw = int(width * _u(rng, 0.14, 0.34))
        top = -20 if rng.random() < 0.3 else int(height * _u(rng, 0.08, 0.6))
        _building(img, rng, x, top, bw, height + 20, _tone(rng, mono, 150, 235), ink, line, mono)
        x += bw + int(rng.integers(-bw // 5, bw // 3 + 1))
    return img


# ------------------------------------------------------------------------------------- speedlines

def _wedge(img, tip, base, half_width, colour):
    dx, dy = base[0] - tip[0], base[1] - tip[1]
    norm = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / norm * half_width, dx / norm * half_width
    poly = np.array([_pt(*tip), _pt(base[0] + nx, base[1] + ny), _pt(base[0] - nx, base[1] - ny)], np.int32)
    cv2.fillPoly(img, [poly], colour, AA)


def _speedlines(rng, height, width):
    img = np.full((height, width, 3), 255, np.uint8)
    ink = _ink(rng)
    reach = math.hypot(height, width)
    if rng.random() < 0.6:  # radial focus lines converging on a point
        cx, cy = width * _u(rng, 0.3, 0.7), height * _u(rng, 0.3, 0.7)
        hole = reach * _u(rng, 0.15, 0.3)
        for _ in range(int(rng.integers(90, 220))):
            angle = _u(rng, 0, 2 * math.pi)
            inner = hole * _u(rng, 1.0, 2.2)
            cos, sin = math.cos(angle), math.sin(angle)
            _wedge(img, (cx + inner * cos, cy + inner * sin), (cx + reach * cos, cy + reach * sin),
                   reach * _u(rng, 0.002, 0.012), ink)
    else:  # parallel action lines, tapering at one end
        angle = _u(rng, -0.5, 0.5) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
        dx, dy = math.cos(angle), math.sin(angle)
        for _ in range(int(rng.integers(60, 160))):
            offset = _u(rng, -reach / 2, reach / 2)
            cx, cy = width / 2 - dy * offset, height / 2 + dx * offset
            start, length = _u(rng, -reach / 2, reach / 4), reach * _u(rng, 0.25, 0.8)
            tip = (cx + dx * start, cy + dy * start)
            base = (tip[0] + dx * length, tip[1] + dy * length)
            _wedge(img, tip, base, _u(rng, 1.0, 4.5), ink)
    return img


# --------------------------------------------------------------------------------------- interior

def _interior(rng, height, width):
    mono = rng.random() < 0.4
    ink = _ink(rng)
    line = max(2, round(min(height, width) / 300))
    img = np.full((height, width, 3), _tone(rng, mono, 225, 250), np.uint8)
    bx0, bx1 = width * _u(rng, 0.18, 0.38), width * _u(rng, 0.62, 0.82)
    by0, by1 = height * _u(rng, 0.1, 0.28), height * _u(rng, 0.5, 0.68)
    floor = np.array([_pt(0, height), _pt(width, height), _pt(bx1, by1), _pt(bx0, by1)], np.int32)
    ceiling = np.array([_pt(0, 0), _pt(width, 0), _pt(bx1, by0), _pt(bx0, by0)], np.int32)
    back = np.array([_pt(bx0, by0), _pt(bx1, by0), _pt(bx1, by1), _pt(bx0, by1)], np.int32)
    cv2.fillPoly(img, [floor], _tone(rng, mono, 170, 225))
    cv2.fillPoly(img, [ceiling], _tone(rng, mono, 235, 255))
    cv2.fillPoly(img, [back], _tone(rng, mono, 215, 245))
    for t in np.linspace(0.0, 1.0, int(rng.integers(5, 11))):  # floor boards toward the vanishing point
        top = (bx0 + t * (bx1 - bx0), by1)
        cv2.line(img, _pt(*top), _pt(-width * 0.6 + t * width * 2.2, height), ink, 1, AA)
    for corner, inner in (((0, 0), (bx0, by0)), ((width, 0), (bx1, by0)),
                          ((0, height), (bx0, by1)), ((width, height), (bx1, by1))):
        cv2.line(img, _pt(*corner), _pt(*inner), ink, line, AA)
    cv2.polylines(img, [back], True, ink, line, AA)
    bw, bh = bx1 - bx0, by1 - by0
    wx0, wx1 = bx0 + bw * _u(rng, 0.08, 0.3), bx0 + bw * _u(rng, 0.45, 0.62)
    wy0, wy1 = by0 + bh * _u(rng, 0.12, 0.25), by0 + bh * _u(rng, 0.55, 0.7)
    cv2.rectangle(img, _pt(wx0, wy0), _pt(wx1, wy1), (205, 228, 248) if not mono else (235, 235, 235), -1)
    cv2.rectangle(img, _pt(wx0, wy0), _pt(wx1, wy1), ink, line, AA)
    cv2.line(img, _pt((wx0 + wx1) / 2, wy0), _pt((wx0 + wx1) / 2, wy1), ink, line, AA)
    cv2.line(img, _pt(wx0, (wy0 + wy1) / 2), _pt(wx1, (wy0 + wy1) / 2), ink, line, AA)
    cx0, cx1 = bx0 + bw * _u(rng, 0.66, 0.72), bx0 + bw * _u(rng, 0.9, 0.98)  # cabinet against the wall
    cy0 = by1 - bh * _u(rng, 0.3, 0.5)
    cv2.rectangle(img, _pt(cx0, cy0), _pt(cx1, by1), _tone(rng, mono, 120, 200), -1)
    cv2.rectangle(img, _pt(cx0, cy0), _pt(cx1, by1), ink, line, AA)
    for k in (1, 2):
        yk = cy0 + (by1 - cy0) * k / 3
        cv2.line(img, _pt(cx0, yk), _pt(cx1, yk), ink, max(1, line - 1), AA)
    tx, ty = width * _u(rng, 0.05, 0.6), height * _u(rng, 0.72, 0.85)  # table in the foreground
    tw, depth = width * _u(rng, 0.22, 0.35), height * 0.05
    top = np.array([_pt(tx, ty), _pt(tx + tw, ty), _pt(tx + tw + depth, ty + depth), _pt(tx + depth, ty + depth)],
                   np.int32)
    for lx in (tx + depth + 4, tx + tw + depth - 4):
        cv2.line(img, _pt(lx, ty + depth), _pt(lx, ty + depth + height * 0.12), ink, line + 1, AA)
    cv2.fillPoly(img, [top], _tone(rng, mono, 150, 215))
    cv2.polylines(img, [top], True, ink, line, AA)
    return img


# -------------------------------------------------------------------------------------------- sky

def _cloud(img, rng, cx, cy, size, ink):
    mask = np.zeros(img.shape[:2], np.uint8)
    puffs = int(rng.integers(4, 8))
    for k in range(puffs):
        px = cx + (k - puffs / 2) * size * 0.45 + _u(rng, -0.1, 0.1) * size
        radius = size * _u(rng, 0.3, 0.55) * (1.0 - abs(k - puffs / 2) / puffs)
        cv2.circle(mask, _pt(px, cy - radius * 0.4), max(4, int(radius)), 1, -1)
    mask[int(cy + size * 0.15):, :] = 0  # flat underside
    edge = mask - cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(size / 60)))
    img[mask > 0] = (252, 252, 252)
    img[edge > 0] = ink


def _sky(rng, height, width):
    palette = int(rng.integers(0, 3))
    if palette == 0:
        img = _gradient(height, width, (110, 165, 228), (228, 240, 252))
    elif palette == 1:
        img = _gradient(height, width, (120, 95, 165), (250, 185, 125))
    else:
        img = _gradient(height, width, (175, 175, 180), (248, 248, 248))
    ink = (70, 80, 105) if palette != 2 else (40, 40, 40)
    for _ in range(int(rng.integers(2, 6))):
        size = min(height, width) * _u(rng, 0.15, 0.35)
        _cloud(img, rng, width * _u(rng, 0.0, 1.0), height * _u(rng, 0.1, 0.8), size, ink)
    return img


# --------------------------------------------------------------------------------------- halftone

def _stripes(height, width, angle, spacing, thickness) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.mod(xs * math.cos(angle) + ys * math.sin(angle), spacing) < thickness


def _halftone(rng, height, width):
    img = np.full((height, width, 3), 255, np.uint8)
    ink = np.asarray(_ink(rng) if rng.random() < 0.7 else _tone(rng, False, 60, 160), np.uint8)
    if rng.random() < 0.55:  # dot screen whose dot size follows a gradient, as in printed tones
        pitch = _u(rng, 6, 12)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        u, v = (xs + ys) / math.sqrt(2), (xs - ys) / math.sqrt(2)
        du, dv = np.mod(u, pitch) - pitch / 2, np.mod(v, pitch) - pitch / 2
        angle = _u(rng, 0, 2 * math.pi)
        ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width)
        ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
        radius = pitch * 0.55 * np.clip(ramp * _u(rng, 1.0, 1.4) - 0.1, 0, 1)
        img[du * du + dv * dv < radius * radius] = ink
    else:  # hatched areas, some cross-hatched, with a drawn edge
        for _ in range(int(rng.integers(3, 7))):
            region = np.zeros((height, width), np.uint8)
            centre = (width * _u(rng, 0, 1), height * _u(rng, 0, 1))
            radius = min(height, width) * _u(rng, 0.2, 0.5)
            points = [_pt(centre[0] + radius * _u(rng, 0.5, 1.0) * math.cos(a),
                          centre[1] + radius * _u(rng, 0.5, 1.0) * math.sin(a))
                      for a in np.linspace(0, 2 * math.pi, 7)[:-1] + _u(rng, 0, 1)]
            cv2.fillPoly(region, [np.array(points, np.int32)], 1)
            hatch = _stripes(height, width, _u(rng, 0, math.pi), _u(rng, 5, 11), _u(rng, 1.0, 2.2))
            if rng.random() < 0.4:
                hatch |= _stripes(height, width, _u(rng, 0, math.pi), _u(rng, 5, 11), 1.2)
            img[(region > 0) & hatch] = ink
            edge = region - cv2.erode(region, np.ones((3, 3), np.uint8))
            img[edge > 0] = ink
    return img


def _plain(rng, height, width):
    paper = [(255, 255, 255), (250, 247, 238), (246, 245, 241), (252, 250, 244)]
    return np.full((height, width, 3), paper[int(rng.integers(len(paper)))], np.uint8)


_PAINTERS = {"city": _city, "speedlines": _speedlines, "interior": _interior, "sky": _sky,
             "halftone": _halftone, "plain": _plain}


def paint_background(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) background of ``kind`` (one of :data:`KINDS`)."""
    if kind not in _PAINTERS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {', '.join(KINDS)}")
    return _PAINTERS[kind](rng, int(height), int(width))
