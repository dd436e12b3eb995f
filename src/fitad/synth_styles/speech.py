"""Speech balloons on the panel: beside a speaker with a tail, across a figure, and vertical text.

Ordinary balloons keep clear of every figure. The *crossing* balloon is the exception on purpose: it
is laid over a band of one figure's body wide enough to hide the whole band, so the figure's visible
mask falls into two parts (what a subject cropper has to cope with).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from fitad.synth_styles.balloons import BALLOON_KINDS, Balloon, build_balloon, paint_balloon
from fitad.synth_styles.blocks import Lettering, columns, dialogue
from fitad.synth_styles.scene import PlacedFigure, Scene, dilate

BALLOON_FILLS = ((255, 255, 255), (255, 255, 255), (255, 252, 240), (250, 250, 255))
BURST_FILLS = ((255, 255, 255), (255, 240, 130))
BALLOON_INK = (22, 22, 26)


def _outline(lettering: Lettering) -> int:
    return max(2, round(lettering.font_size * 0.11))


def fit_balloon(scene: Scene, lettering: Lettering, shape: str, tail=None,
                need: tuple[float, float] | None = None) -> tuple[Balloon, int, int] | None:
    """A balloon of ``shape`` holding ``lettering`` (and covering ±``need`` around its centre).

    Returns the balloon and the block's top-left inside it, or None when the text will not fit.
    """
    bw, bh = lettering.size
    margin = _outline(lettering) + 0.3 * lettering.font_size
    half_w, half_h = bw / 2 + margin, bh / 2 + margin
    if need is not None:
        half_w, half_h = max(half_w, need[0]), max(half_h, need[1])
    padding = float(scene.rng.uniform(0.1, 0.4)) * lettering.font_size
    for _ in range(4):
        balloon = build_balloon(shape, half_w, half_h, _outline(lettering), scene.rng, tail, padding)
        left, top = balloon.centre[0] - bw // 2, balloon.centre[1] - bh // 2
        if lettering.fits(balloon.inner, left, top):
            return balloon, left, top
        padding += 0.3 * lettering.font_size
    return None


def _paint(scene: Scene, balloon: Balloon, lettering: Lettering, x: int, y: int, left: int, top: int) -> None:
    rng = scene.rng
    fills = BURST_FILLS if balloon.kind == "burst" else BALLOON_FILLS
    paint_balloon(scene.image, balloon, x, y, fills[int(rng.integers(len(fills)))], BALLOON_INK)
    scene.cover(balloon.mask, x, y, "bubble")
    lettering.write(scene, x + left, y + top)


def _head(figure: PlacedFigure) -> tuple[float, float]:
    return figure.joints["head"]


def place_speech(scene: Scene, lettering: Lettering, shape: str, speaker: PlacedFigure | None,
                 figure_zone: np.ndarray, tries: int = 30) -> bool:
    """Put a balloon near ``speaker`` with its tail toward the speaker's head, clear of all figures."""
    rng = scene.rng
    x0, y0, x1, y1 = scene.inner
    bw, bh = lettering.size
    half_w, half_h = bw * 0.75 + lettering.font_size, bh * 0.75 + lettering.font_size  # ~ body radii
    for _ in range(tries):
        if speaker is not None and rng.random() < 0.8:
            hx, hy = _head(speaker)
            cx = hx + rng.uniform(-1, 1) * ((x1 - x0) * 0.2 + half_w)
            cy = hy - rng.uniform(0.6, 1.8) * (half_h + speaker.head_radius)
        else:
            cx = rng.uniform(x0 + half_w, max(x0 + half_w + 1, x1 - half_w))
            cy = rng.uniform(y0 + half_h, max(y0 + half_h + 1, y0 + (y1 - y0) * 0.6))
        tail = None
        if speaker is not None:
            hx, hy = _head(speaker)
            angle = math.atan2(hy - cy, hx - cx)
            room = math.hypot(hx - cx, hy - cy) - math.hypot(half_w * math.cos(angle), half_h * math.sin(angle))
            room -= speaker.head_radius * 1.8
            if room > 8:
                tail = (angle, min(room * rng.uniform(0.45, 0.8), max(half_w, half_h) * 0.9))
        elif rng.random() < 0.5:
            tail = (rng.uniform(0.3, 2.8), lettering.font_size * rng.uniform(1.0, 2.0))
        fitted = fit_balloon(scene, lettering, shape, tail)
        if fitted is None:
            return False
        balloon, left, top = fitted
        x, y = int(round(cx)) - balloon.centre[0], int(round(cy)) - balloon.centre[1]
        if not scene.free_for_text(balloon.mask, x, y) or Scene.overlap(figure_zone, balloon.mask, x, y):
            continue
        _paint(scene, balloon, lettering, x, y, left, top)
        return True
    return False


def _split_in_two(figure: PlacedFigure, balloon: Balloon, x: int, y: int) -> bool:
    """Whether covering ``balloon`` at (x, y) leaves the figure's visible mask in >= 2 pieces."""
    ys, xs = np.nonzero(figure.mask)
    fx0, fy0 = int(xs.min()), int(ys.min())
    left = figure.mask[fy0:int(ys.max()) + 1, fx0:int(xs.max()) + 1].copy()
    h, w = balloon.mask.shape
    bx0, by0 = max(x, fx0), max(y, fy0)
    bx1, by1 = min(x + w, fx0 + left.shape[1]), min(y + h, fy0 + left.shape[0])
    if bx1 > bx0 and by1 > by0:
        left[by0 - fy0:by1 - fy0, bx0 - fx0:bx1 - fx0] &= ~balloon.mask[by0 - y:by1 - y, bx0 - x:bx1 - x]
    count, _, stats, _ = cv2.connectedComponentsWithStats(left.astype(np.uint8), connectivity=8)
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= 30)) >= 2


def _bands(figure: PlacedFigure) -> list[float]:
    """Heights at which a balloon can cross the figure: chest/waist, thighs, shins."""
    j = figure.joints
    mid = lambda a, b, t: j[a][1] + (j[b][1] - j[a][1]) * t  # noqa: E731
    if figure.pose == "bust":
        return [mid("neck", "pelvis", 0.3), mid("neck", "pelvis", 0.15)]
    return [mid("neck", "pelvis", 0.55), mid("l_hip", "l_knee", 0.5), mid("r_knee", "r_foot", 0.4)]


def _cross_at(scene: Scene, figure: PlacedFigure, lettering: Lettering, shape: str, band: float,
              shift: float) -> tuple[Balloon, int, int, int, int] | None:
    """A balloon hiding every pixel of ``figure`` in a band around height ``band``, or None.

    ``shift`` moves the balloon sideways (a fraction of the band's width) and widens it to match,
    so a figure near the frame's edge can still be crossed.
    """
    half_h = lettering.size[1] / 2 + _outline(lettering) + 0.3 * lettering.font_size
    rows = figure.mask[max(0, int(band - half_h)):int(band + half_h) + 1]
    cols = np.nonzero(rows.any(axis=0))[0]
    if len(cols) == 0:
        return None
    half_w = (cols.max() - cols.min() + 1) / 2 + 8
    cx, cy = (int(cols.min()) + int(cols.max()) + 1) / 2 + shift * half_w, band
    fitted = fit_balloon(scene, lettering, shape, need=(half_w * (1 + abs(shift)), half_h))
    if fitted is None:
        return None
    balloon, left, top = fitted
    x, y = int(round(cx)) - balloon.centre[0], int(round(cy)) - balloon.centre[1]
    if not scene.free_for_text(balloon.mask, x, y):
        return None
    if any(f.drawn_area - Scene.overlap(f.mask, balloon.mask, x, y) < 0.35 * f.drawn_area for f in scene.figures):
        return None
    hx, hy = (int(round(v)) for v in _head(figure))
    h, w = balloon.mask.shape
    if 0 <= hy - y < h and 0 <= hx - x < w and balloon.mask[hy - y, hx - x]:
        return None  # keep the face visible: cross the body, not the head
    if not _split_in_two(figure, balloon, x, y):
        return None
    return balloon, x, y, left, top


def place_crossing(scene: Scene) -> bool:
    """A balloon across a figure's body, cutting its visible mask in two (it is occluded by a bubble)."""
    rng = scene.rng
    inner_h = scene.inner[3] - scene.inner[1]
    tall = [f for f in scene.figures if np.ptp(np.nonzero(f.mask.any(axis=1))[0]) > 0.22 * inner_h]
    lettering = dialogue(scene, max_lines=2)
    shape = BALLOON_KINDS[int(rng.integers(len(BALLOON_KINDS)))]
    # A rounded box hugs the band far closer than an ellipse, so it is the fallback near frame edges.
    for shape in dict.fromkeys((shape, "rounded")):
        for index in rng.permutation(len(tall)):
            bands = _bands(tall[index])
            for band in [bands[k] for k in rng.permutation(len(bands))]:
                for shift in (0.0, 0.35, -0.35):
                    found = _cross_at(scene, tall[index], lettering, shape, band, shift)
                    if found is not None:
                        balloon, x, y, left, top = found
                        _paint(scene, balloon, lettering, x, y, left, top)
                        return True
    return False


def place_vertical(scene: Scene, speaker: PlacedFigure | None, figure_zone: np.ndarray) -> bool:
    """Korean columns, in a tall balloon or free on the background with a thin paper halo."""
    rng = scene.rng
    lettering = columns(scene)
    if rng.random() < 0.6:
        shape = ("ellipse", "rounded")[int(rng.integers(2))]
        return place_speech(scene, lettering, shape, speaker, figure_zone)
    halo = max(2, lettering.font_size // 10)
    bw, bh = lettering.size
    backing = np.zeros((bh, bw), bool)
    for piece in lettering.pieces:
        backing[piece.y:piece.y + piece.size[1], piece.x:piece.x + piece.size[0]] |= piece.alpha > 0
    backing = dilate(backing, halo)
    x0, y0, x1, y1 = scene.inner
    for _ in range(30):
        x = int(rng.integers(x0 + 2, max(x0 + 3, x1 - backing.shape[1] - 2)))
        y = int(rng.integers(y0 + 2, max(y0 + 3, y1 - backing.shape[0] - 2)))
        if not scene.free_for_text(backing, x, y) or Scene.overlap(figure_zone, backing, x, y):
            continue
        scene.image[y:y + backing.shape[0], x:x + backing.shape[1]][backing] = (255, 255, 255)
        scene.cover(backing, x, y, "vertical")
        lettering.write(scene, x + halo, y + halo)
        return True
    return False
