"""Subject crops: figures from a mask -> square boxes with margin -> padded, resized training images.

Boxes are ``(x0, y0, x1, y1)`` in pixels with x1/y1 exclusive. A square crop box may reach beyond
the image; that part is padded, never stretched.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

Box = tuple[int, int, int, int]


@dataclasses.dataclass
class Figure:
    bbox: Box
    area: int  # mask pixels

    @property
    def side(self) -> int:
        """Longer side of the bounding box."""
        return max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1)


def _gap(a: Box, b: Box) -> float:
    """Distance between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def _x_overlap(a: Box, b: Box) -> float:
    """Share of ``b``'s width that lies within ``a``'s horizontal extent."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) / max(b[2] - b[0], 1)


def same_figure(big: Figure, small: Figure) -> bool:
    """Whether ``small`` is a piece of ``big`` rather than a figure of its own.

    Pieces arise where something in front cuts a figure (a speech balloon across the legs, removed
    lettering): boxes that mostly overlap; a smaller piece above or below within the figure's width
    (legs, head); or a much smaller piece close by (a hand, an accessory).
    """
    if _overlap_of_smaller(big.bbox, small.bbox) > 0.3:
        return True
    gap = _gap(big.bbox, small.bbox)
    if small.area < 0.7 * big.area and _x_overlap(big.bbox, small.bbox) >= 0.5 and gap < 0.35 * big.side:
        return True
    return small.area < 0.25 * big.area and gap < 0.15 * big.side


def find_figures(mask: np.ndarray, min_area_frac: float = 0.004, split: bool = True,
                 min_relative_area: float = 0.1) -> list[Figure]:
    """Separate figures in a binary mask, largest first.

    Components smaller than ``min_area_frac`` of the image are noise and ignored. Pieces of one
    figure (see :func:`same_figure`) are merged. A group under ``min_relative_area`` of the largest
    figure is not a figure of its own (a hand beyond a balloon, a stray blob): it joins the nearest
    figure within half that figure's size, or is dropped. Without ``split`` everything is one figure.
    """
    binary = (mask > 127).astype(np.uint8)
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = max(1, int(min_area_frac * mask.size))
    pieces = [Figure((int(x), int(y), int(x + w), int(y + h)), int(a))
              for x, y, w, h, a in stats[1:] if a >= max(1, min_area // 10)]
    pieces.sort(key=lambda f: f.area, reverse=True)
    figures: list[Figure] = []
    for piece in pieces:
        for i, fig in enumerate(figures):
            if not split or same_figure(fig, piece):
                figures[i] = Figure(_union(fig.bbox, piece.bbox), fig.area + piece.area)
                break
        else:
            if piece.area >= min_area:  # small pieces join a figure or are dropped as noise
                figures.append(piece)
    if not figures:
        return []
    largest = max(f.area for f in figures)
    major = [f for f in figures if f.area >= min_relative_area * largest]
    for minor in (f for f in figures if f.area < min_relative_area * largest):
        i = min(range(len(major)), key=lambda k: _gap(major[k].bbox, minor.bbox))
        if _gap(major[i].bbox, minor.bbox) < 0.5 * major[i].side:
            major[i] = Figure(_union(major[i].bbox, minor.bbox), major[i].area + minor.area)
    return sorted(major, key=lambda f: f.area, reverse=True)


def square_box(bbox: Box, margin: float, width: int, height: int) -> Box:
    """Square box around ``bbox`` with ``margin`` (fraction of its longer side) on every side.

    The square is shifted to stay inside the image where it fits, so padding is used only when the
    subject with its margin is larger than the image in that direction.
    """
    x0, y0, x1, y1 = bbox
    side = int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    side = max(side, 1)

    def place(lo: int, hi: int, limit: int) -> int:
        start = (lo + hi) // 2 - side // 2
        if side <= limit:
            start = min(max(start, 0), limit - side)
        return start

    sx, sy = place(x0, x1, width), place(y0, y1, height)
    return sx, sy, sx + side, sy + side


def pad_color(rgb: np.ndarray, mode: str, padded_sides: frozenset[str] = frozenset()) -> tuple[int, int, int] | None:
    """Constant padding colour for ``mode``; None means replicate the edge pixels.

    ``auto`` takes the median colour of ``rgb``'s edges that are not padded (``padded_sides`` names
    top/bottom/left/right): for a crop, the subject's own background. The edges that meet the image
    border are left out because a panel's frame line runs there and would make every pad black.
    """
    if mode == "white":
        return (255, 255, 255)
    if mode == "black":
        return (0, 0, 0)
    if mode == "edge":
        return None
    edges = {"top": rgb[0], "bottom": rgb[-1], "left": rgb[:, 0], "right": rgb[:, -1]}
    kept = [edge for side, edge in edges.items() if side not in padded_sides] or list(edges.values())
    return tuple(int(v) for v in np.median(np.concatenate(kept), axis=0))


def crop_square(rgb: np.ndarray, box: Box, resolution: int, pad_mode: str = "auto") -> np.ndarray:
    """Cut ``box`` out of ``rgb`` (padding where it leaves the image) and resize to ``resolution``²."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    inner = rgb[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y1 - h), max(0, x1 - w)
    if top or left or bottom or right:
        sides = frozenset(name for name, amount in (("top", top), ("bottom", bottom), ("left", left),
                                                    ("right", right)) if amount)
        color = pad_color(inner, pad_mode, sides)
        if color is None:
            inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
        else:
            inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    side = inner.shape[0]
    interp = cv2.INTER_AREA if side > resolution else cv2.INTER_LANCZOS4
    return cv2.resize(inner, (resolution, resolution), interpolation=interp)
