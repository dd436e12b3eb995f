"""Speech balloons (ellipse, rounded box, thought cloud, shout burst) and caption boxes with tails.

A balloon is built around a rectangle it must contain (a text block, or the band of a figure it has
to hide), as a boolean shape on its own small canvas. The outline is the inner ring of the shape, so
the shape is exactly what the balloon covers on the panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BALLOON_KINDS = ("ellipse", "rounded", "cloud", "burst")


@dataclass
class Balloon:
    mask: np.ndarray    # bool (h, w): every pixel the balloon paints (fill, outline, tail)
    ring: np.ndarray    # bool: the outline
    inner: np.ndarray   # bool: where text can go without touching the outline
    centre: tuple[int, int]  # the body's centre in mask pixels
    kind: str


def _disc_kernel(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _rounded_box(mask, c, a, b, corner) -> None:
    cx, cy = c
    corner = int(max(0, min(corner, a, b)))
    cv2.rectangle(mask, (cx - a + corner, cy - b), (cx + a - corner, cy + b), 1, -1)
    cv2.rectangle(mask, (cx - a, cy - b + corner), (cx + a, cy + b - corner), 1, -1)
    if corner:
        for sx in (-1, 1):
            for sy in (-1, 1):
                cv2.circle(mask, (cx + sx * (a - corner), cy + sy * (b - corner)), corner, 1, -1)


def _ellipse_point(c, a, b, t) -> tuple[float, float]:
    return c[0] + a * math.cos(t), c[1] + b * math.sin(t)


def _radius_toward(a: float, b: float, angle: float) -> float:
    """Distance from an ellipse's centre to its edge in direction ``angle``."""
    return a * b / math.hypot(b * math.cos(angle), a * math.sin(angle))


def _tail(mask, c, a, b, kind, tail, rng) -> None:
    angle, length = tail
    edge = _radius_toward(a, b, angle)
    ux, uy = math.cos(angle), math.sin(angle)
    if kind == "cloud":  # a trail of shrinking puffs
        base = max(4.0, min(a, b) * 0.16)
        for k, t in enumerate((0.3, 0.62, 0.92)):
            d = edge + length * t
            cv2.circle(mask, (int(c[0] + ux * d), int(c[1] + uy * d)), max(2, int(base * (1 - 0.3 * k))), 1, -1)
        return
    half = max(4.0, min(a, b) * float(rng.uniform(0.14, 0.24)))
    bend = float(rng.uniform(-0.35, 0.35)) * length
    root = (c[0] + ux * edge * 0.6, c[1] + uy * edge * 0.6)
    tip = (c[0] + ux * (edge + length) - uy * bend, c[1] + uy * (edge + length) + ux * bend)
    pts = np.array([(root[0] - uy * half, root[1] + ux * half), tip, (root[0] + uy * half, root[1] - ux * half)])
    cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1)


def build_balloon(kind: str, half_w: float, half_h: float, outline: int, rng: np.random.Generator,
                  tail: tuple[float, float] | None = None, padding: float = 0.0) -> Balloon:
    """A balloon containing the rectangle ±``half_w`` x ±``half_h`` around its centre.

    ``kind`` is one of :data:`BALLOON_KINDS` or ``box`` (a square caption box). ``tail`` is
    (direction in radians, length in pixels) or None. ``padding`` widens the shape beyond the rect.
    """
    hw, hh = half_w + padding, half_h + padding
    if kind == "box":
        a, b = hw, hh
    elif kind == "rounded":
        a, b = hw + outline, hh + outline
    else:  # an ellipse through the rectangle's corners contains it (1/2 + 1/2 = 1)
        a, b = hw * math.sqrt(2) + outline, hh * math.sqrt(2) + outline
    a, b = int(math.ceil(a)), int(math.ceil(b))
    reach = int((tail[1] if tail else 0) + max(a, b) * 0.5 + 8)
    width, height = 2 * (a + reach), 2 * (b + reach)
    c = (width // 2, height // 2)
    mask = np.zeros((height, width), np.uint8)
    if kind in ("rounded", "box"):
        _rounded_box(mask, c, a, b, 0 if kind == "box" else int(min(a, b, 3 * padding + outline) * 0.9))
    else:
        cv2.ellipse(mask, c, (a, b), 0, 0, 360, 1, -1)
    if kind == "cloud":  # scalloped edge: puffs centred on the ellipse
        puffs = int(max(8, (a + b) / 14))
        start = float(rng.uniform(0, 2 * math.pi))
        for k in range(puffs):
            px, py = _ellipse_point(c, a, b, start + 2 * math.pi * k / puffs)
            radius = math.pi * (a + b) / puffs * float(rng.uniform(0.5, 0.7))
            cv2.circle(mask, (int(px), int(py)), int(radius), 1, -1)
    elif kind == "burst":  # spikes between points on the ellipse
        spikes = int(rng.integers(10, 18))
        start = float(rng.uniform(0, 2 * math.pi))
        pts = []
        for k in range(2 * spikes):
            t = start + math.pi * k / spikes
            scale = 1.0 if k % 2 == 0 else float(rng.uniform(1.2, 1.5))
            pts.append((c[0] + a * scale * math.cos(t), c[1] + b * scale * math.sin(t)))
        cv2.fillPoly(mask, [np.rint(np.array(pts)).astype(np.int32)], 1)
    if tail is not None:
        _tail(mask, c, a, b, kind, tail, rng)
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    mask = mask[y0:int(ys.max()) + 1, x0:int(xs.max()) + 1]
    mask = np.pad(mask, 1)  # so erosion sees an edge everywhere
    inside = cv2.erode(mask, _disc_kernel(outline))
    safe = cv2.erode(mask, _disc_kernel(outline + 3))
    return Balloon(mask > 0, (mask > 0) & (inside == 0), safe > 0, (c[0] - x0 + 1, c[1] - y0 + 1), kind)


def paint_balloon(image: np.ndarray, balloon: Balloon, x: int, y: int, fill, ink) -> None:
    """Paint the balloon with its mask's top-left at panel pixel (x, y)."""
    h, w = balloon.mask.shape
    region = image[y:y + h, x:x + w]
    region[balloon.mask] = fill
    region[balloon.ring] = ink
