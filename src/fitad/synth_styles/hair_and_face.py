"""Hair shapes (spikes, long, bob, ponytail, short) and simple manga faces for the skeleton figures.

All coordinates are in body-height units around the head centre ``hc`` with head radius ``r``; the
drawing goes through a :class:`fitad.synth_styles.figures.Pen` (outline pass, then fill).
"""

from __future__ import annotations

import math

import numpy as np

from fitad.synth_styles.labels import ACCENT, HAIR, OUTLINE, SHINE


def _arc(hc, rx: float, ry: float, start: float, stop: float, count: int) -> list:
    """Points on an ellipse around ``hc``; angles in radians, pi..2*pi runs over the top of the head."""
    return [hc + (rx * math.cos(t), ry * math.sin(t)) for t in np.linspace(start, stop, count)]


def _fringe(hc, r: float, count: int, rng: np.random.Generator | None = None) -> list:
    """Zigzag bangs from the right temple to the left one, tips stopping above the eyes."""
    points = []
    for k in range(count + 1):
        x = hc[0] + r * 1.18 - 2.36 * r * k / count
        depth = 0.0 if k % 2 else -0.4
        if rng is not None and k % 2:
            depth += float(rng.uniform(-0.12, 0.06))
        points.append(hc + (x - hc[0], depth * r))
    return points


def back_hair(pen, hc, r: float, style: str) -> None:
    """The part of the hair behind the head and body (drawn first)."""
    if style in ("long", "bob"):
        drop = 2.9 * r if style == "long" else 1.15 * r
        width = 1.35 * r if style == "long" else 1.3 * r
        top = _arc(hc, 1.18 * r, 1.25 * r, math.pi, 2 * math.pi, 12)
        hem = [hc + (width, drop), hc + (width * 0.3, drop + 0.25 * r), hc + (-width * 0.3, drop + 0.25 * r),
               hc + (-width, drop)]
        pen.poly(top + hem, HAIR)
    elif style == "ponytail":
        pen.ellipse(hc + (1.2 * r, 0.5 * r), (0.42 * r, 1.05 * r), HAIR, angle=-25)


def front_hair(pen, hc, r: float, style: str, rng: np.random.Generator) -> None:
    """Hair over the top of the head: a cap with bangs, or a crown of spikes."""
    if style == "spiky":
        spikes = int(rng.integers(5, 9))
        angles = np.linspace(math.pi - 0.35, 2 * math.pi + 0.35, 2 * spikes + 1)
        crown = []
        for k, t in enumerate(angles):
            reach = (1.12 if k % 2 == 0 else float(rng.uniform(1.45, 1.85))) * r
            crown.append(hc + (reach * math.cos(t), reach * 1.05 * math.sin(t)))
        pen.poly(crown[::-1] + _fringe(hc, r, 6, rng)[::-1], HAIR)
        return
    cap = _arc(hc, 1.2 * r, 1.34 * r, math.pi - 0.15, 2 * math.pi + 0.15, 14)
    pen.poly(cap + _fringe(hc, r, 8 if style != "short" else 4, rng), HAIR)


def face(pen, hc, r: float, look) -> None:
    """Eyes (round with a shine, big, or closed lines), brows and a mouth, shifted toward ``facing``."""
    shift = look.facing * 0.22 * r
    eye_y = 0.2 * r
    line = max(1, pen.outline - 1)
    for side in (-1, 1):
        eye = hc + (shift + side * 0.4 * r, eye_y)
        if look.eyes == "line":
            pen.stroke([eye + (-0.14 * r, 0.02 * r), eye + (0, -0.06 * r), eye + (0.14 * r, 0.02 * r)], line + 1)
        else:
            big = look.eyes == "big"
            axes = (0.15 * r, 0.25 * r) if big else (0.1 * r, 0.17 * r)
            pen.ellipse(eye, axes, OUTLINE, outlined=False)
            if big:
                pen.ellipse(eye + (0, 0.05 * r), (0.09 * r, 0.14 * r), ACCENT, outlined=False)
            pen.ellipse(eye + (-0.04 * r, -0.07 * r), (0.045 * r, 0.045 * r), SHINE, outlined=False)
        pen.stroke([eye + (-0.15 * r, -0.33 * r), eye + (0.13 * r, -0.38 * r - side * 0.03 * r)], line)
    mouth = hc + (shift, 0.66 * r)
    if look.facing > 0.6:  # shouting: open mouth
        pen.ellipse(mouth, (0.12 * r, 0.08 * r), OUTLINE, outlined=False)
    else:
        pen.stroke([mouth + (-0.12 * r, 0), mouth + (0.12 * r, 0.02 * r)], line)
