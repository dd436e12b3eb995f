"""Subject crops: figures from a mask -> square boxes with margin -> padded, resized training images.

Boxes are ``(x0, y0, x1, y1)`` in pixels with x1/y1 exclusive. A square crop box may reach beyond
the image; that part is padded, never stretched.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fitad.prep.segment import fill_holes

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


def same_figure(big: Figure, small: Figure, distance: float | None = None, bridged: bool = False) -> bool:
    """Whether ``small`` is a piece of ``big`` rather than a figure of its own.

    ``distance`` is the pixel distance between the two masks (None: measured between their boxes);
    ``bridged``: removed text (a balloon or a sound effect drawn across the figure) fills the gap between
    them. Pieces arise where something in front cuts a figure: pieces that (nearly) touch; a much smaller
    piece close by (a hand, an accessory); a piece above or below, overlapping the figure's width, with
    text between them. Neighbours standing apart stay separate, however small one of them is.
    """
    gap = _gap(big.bbox, small.bbox) if distance is None else distance
    if gap <= 2.0:
        return True
    if small.area < 0.05 * big.area and gap < 0.06 * big.side:
        return True
    return bridged and _x_overlap(big.bbox, small.bbox) >= 0.2 and gap < 0.5 * big.side


def _mask_distance(labels: np.ndarray, members: list[int], bbox: Box, piece: int, piece_box: Box,
                   limit: float) -> float:
    """Pixel distance from the pieces ``members`` to ``piece`` (``limit`` when they are that far apart or more).

    Only figure pixels within ``limit`` of the piece's box can matter, so the work stays in that window.
    """
    if _gap(bbox, piece_box) >= limit:
        return limit
    h, w = labels.shape
    pad = int(limit) + 1
    x0, y0 = max(piece_box[0] - pad, 0), max(piece_box[1] - pad, 0)
    x1, y1 = min(piece_box[2] + pad, w), min(piece_box[3] + pad, h)
    window = labels[y0:y1, x0:x1]
    figure = np.isin(window, members)
    if not figure.any():
        return limit
    dist = cv2.distanceTransform(np.where(figure, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    at_piece = dist[window == piece]
    return min(float(at_piece.min()), limit) if at_piece.size else limit


def _bridged(a: Box, b: Box, text_mask: np.ndarray | None, min_share: float = 0.03) -> bool:
    """Removed text lies in the band between two boxes stacked one above the other (over both their widths:
    a balloon's lettering need not sit right above the piece it cut off)."""
    if text_mask is None:
        return False
    x0, x1 = min(a[0], b[0]), max(a[2], b[2])
    top, bottom = (a, b) if a[1] <= b[1] else (b, a)
    y0, y1 = top[3], bottom[1]
    if x1 <= x0:
        return False
    if y1 <= y0:  # the boxes overlap in height: the band is their overlap
        y0, y1 = max(a[1], b[1]), min(a[3], b[3])
    band = text_mask[max(y0, 0):max(y1, 0), x0:x1]
    return band.size > 0 and np.count_nonzero(band) >= min_share * band.size


def balloon_regions(rgb: np.ndarray, text_mask: np.ndarray | None, dark_level: int = 80,
                    max_share: float = 0.2) -> np.ndarray:
    """Labels (int32, 0 = none) of the enclosed light regions that held removed text: balloons, caption boxes.

    A region touching the image border or larger than ``max_share`` of the image is background the
    lettering sat on (a sound effect on the sky), not a balloon.
    """
    out = np.zeros(rgb.shape[:2], np.int32)
    if text_mask is None or not text_mask.any():
        return out
    light = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) >= dark_level).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(light, connectivity=4)
    held = np.bincount(labels[text_mask > 0], minlength=n)
    h, w = labels.shape
    border = np.zeros(n, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        border[np.unique(edge)] = True
    keep = (held > 0) & ~border & (stats[:, cv2.CC_STAT_AREA] <= max_share * h * w)
    keep[0] = False
    ids = np.zeros(n, np.int32)
    ids[keep] = np.arange(1, int(keep.sum()) + 1)
    return ids[labels]


def balloon_boxes(balloons: np.ndarray | None) -> dict[int, Box]:
    """Box (x0, y0, x1, y1; exclusive ends) of each labelled balloon."""
    if balloons is None:
        return {}
    n = int(balloons.max()) if balloons.size else 0
    if n == 0:
        return {}
    boxes: dict[int, Box] = {}
    ys, xs = np.nonzero(balloons)
    ids = balloons[ys, xs]
    for balloon in range(1, n + 1):
        pick = ids == balloon
        if pick.any():
            boxes[balloon] = (int(xs[pick].min()), int(ys[pick].min()), int(xs[pick].max()) + 1,
                              int(ys[pick].max()) + 1)
    return boxes


def _crosses_balloon(labels: np.ndarray, members: list[int], fig: Figure, piece: int, part: Figure,
                     balloons: np.ndarray | None, boxes: dict[int, Box], reach: int) -> bool:
    """A balloon lies across the figure ``fig`` (pieces ``members``) and the piece ``part`` (label ``piece``):
    both come within ``reach`` px of it, one above it and one below it, each overlapping its width; and the
    piece lies over the figure (half the narrower width shared), or it is a small part (under a quarter of the
    figure's area: feet sticking out below the balloon) whose shortest way to the figure runs through the
    balloon. A neighbour beside the figure, whose head shows above the same balloon, passes neither test.

    Only balloons whose box comes within ``reach`` of both boxes are looked at, each inside its own window.
    """
    if balloons is None:
        return False
    fig_box, piece_box = fig.bbox, part.bbox
    shared = min(fig_box[2], piece_box[2]) - max(fig_box[0], piece_box[0])
    stacked = shared >= 0.5 * min(fig_box[2] - fig_box[0], piece_box[2] - piece_box[0])
    if not stacked and part.area >= 0.25 * fig.area:
        return False
    h, w = labels.shape
    for balloon, (bx0, by0, bx1, by1) in boxes.items():
        if _gap(fig_box, (bx0, by0, bx1, by1)) > reach or _gap(piece_box, (bx0, by0, bx1, by1)) > reach:
            continue
        x0, y0, x1, y1 = max(bx0 - reach, 0), max(by0 - reach, 0), min(bx1 + reach, w), min(by1 + reach, h)
        inside = balloons[y0:y1, x0:x1] == balloon
        near = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))) > 0
        window = labels[y0:y1, x0:x1]
        if not (near & (window == piece)).any() or not (near & np.isin(window, members)).any():
            continue
        columns = labels[:, bx0:bx1]
        piece_rows = np.nonzero((columns == piece).any(axis=1))[0]
        figure_rows = np.nonzero(np.isin(columns, members).any(axis=1))[0]
        if not len(piece_rows) or not len(figure_rows):
            continue
        middle = (by0 + by1 - 1) / 2
        below = piece_rows.min() >= middle and figure_rows.min() < by0
        above = piece_rows.max() <= middle and figure_rows.max() >= by1
        if (below or above) and (stacked or _through(labels, members, piece, _union(fig_box, piece_box),
                                                     balloons, balloon, reach)):
            return True
    return False


def _through(labels: np.ndarray, members: list[int], piece: int, box: Box, regions: np.ndarray, region: int,
             reach: int, share: float = 0.5) -> bool:
    """The straight line between the closest points of ``piece`` and the pieces ``members`` (all inside ``box``)
    lies for at least ``share`` of its length in the ``regions`` label ``region`` (grown by ``reach`` px for its
    outline). Worked out in ``box`` only: one distance transform finds the closest pair exactly."""
    x0, y0, x1, y1 = box
    window = labels[y0:y1, x0:x1]
    figure = np.isin(window, members)
    ys, xs = np.nonzero(window == piece)
    if not len(ys) or not figure.any():
        return False
    # every pixel learns its distance to, and the label of, the nearest figure pixel (each its own label)
    dist, nearest = cv2.distanceTransformWithLabels(np.where(figure, 0, 255).astype(np.uint8), cv2.DIST_L2,
                                                    cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL)
    fy, fx = np.nonzero(figure)
    where = np.zeros((int(nearest.max()) + 1, 2), np.int64)
    where[nearest[fy, fx]] = np.stack([fy, fx], axis=1)
    k = int(np.argmin(dist[ys, xs]))
    p = np.array([ys[k], xs[k]])
    q = where[nearest[ys[k], xs[k]]]
    length = int(np.hypot(*(p - q)))
    if length < 2:
        return True
    inside = (regions[y0:y1, x0:x1] == region).astype(np.uint8)
    grown = cv2.dilate(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))) > 0
    t = np.linspace(0.0, 1.0, length + 1)[1:-1]
    rows = np.round(p[0] + t * (q[0] - p[0])).astype(int)
    cols = np.round(p[1] + t * (q[1] - p[1])).astype(int)
    return float(grown[rows, cols].mean()) >= share


def find_figures(mask: np.ndarray, min_area_frac: float = 0.004, split: bool = True,
                 text_mask: np.ndarray | None = None, balloons: np.ndarray | None = None) -> list[Figure]:
    """Separate figures in a binary mask, largest first.

    Components smaller than ``min_area_frac`` of the image are noise unless they join a figure. Pieces
    of one figure (see :func:`same_figure`; distances measured between the masks) are merged; what lay
    across a figure is shown by ``text_mask`` (removed lettering) and ``balloons`` (labels from
    :func:`balloon_regions`). Without ``split`` everything is one figure.
    """
    binary = (mask > 127).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = max(1, int(min_area_frac * mask.size))
    pieces = [(i, Figure((int(x), int(y), int(x + w), int(y + h)), int(a)))
              for i, (x, y, w, h, a) in enumerate(stats[1:], start=1) if a >= max(1, min_area // 10)]
    pieces.sort(key=lambda p: p[1].area, reverse=True)
    boxes = balloon_boxes(balloons)
    figures: list[tuple[list[int], Figure]] = []
    for label, piece in pieces:
        accepting: list[tuple[float, int]] = []  # (distance, figure index): the piece joins the nearest
        for k, (members, fig) in enumerate(figures):
            if not split:
                accepting.append((0.0, k))
                continue
            distance = _mask_distance(labels, members, fig.bbox, label, piece.bbox, 0.5 * fig.side)
            joins = same_figure(fig, piece, distance, False)
            if not joins and distance < 0.5 * fig.side and _bridged(fig.bbox, piece.bbox, text_mask):
                joins = same_figure(fig, piece, distance, True)
            # a balloon laid across a figure: however tall it is, the parts on either side are one figure
            joins = joins or _crosses_balloon(labels, members, fig, label, piece, balloons, boxes,
                                              max(8, int(0.03 * fig.side)))
            if joins:
                accepting.append((distance, k))
        if accepting:
            _d, k = min(accepting)
            members, fig = figures[k]
            figures[k] = (members + [label], Figure(_union(fig.bbox, piece.bbox), fig.area + piece.area))
        elif piece.area >= min_area:  # small pieces join a figure or are dropped as noise
            figures.append(([label], piece))
    return sorted((fig for _m, fig in figures), key=lambda f: f.area, reverse=True)


def not_a_figure(fig: Figure, mask: np.ndarray, text_mask: np.ndarray | None, max_text_share: float = 0.25,
                 max_rect_fill: float = 0.95, max_solidity: float = 0.96, min_thickness: float = 0.12) -> str | None:
    """Why a masked region is not a drawn figure, or None when nothing says so.

    * text: removed lettering covers ``max_text_share`` of the region (holes filled) or more (a caption box);
    * a rectangle: its pixels fill ``max_rect_fill`` of their rotated bounding rectangle (a building, a
      window, a caption box); a figure's outline always leaves much of that rectangle empty;
    * a plain convex shape: it fills ``max_solidity`` of its convex hull (an ellipse, a cloud puff); a drawn
      figure's head, arms and legs leave gaps in its hull (under 0.94 on every character of both generators);
    * a line: its shorter side is under ``min_thickness`` of its longer one (a speed line, a frame piece).
    """
    x0, y0, x1, y1 = fig.bbox
    w, h = x1 - x0, y1 - y0
    region = (mask[y0:y1, x0:x1] > 127).astype(np.uint8)
    if text_mask is not None:
        # measured on the region itself (holes filled: the lettering inside a caption box), so a figure whose
        # box spans the balloon laid across it is not taken for text
        filled = fill_holes(region * 255) > 0
        text_share = np.count_nonzero(text_mask[y0:y1, x0:x1][filled]) / max(np.count_nonzero(filled), 1)
        if text_share >= max_text_share:
            return f"mostly text ({text_share:.0%} of it was removed lettering), likely a narration box or a balloon"
    if min(w, h) < min_thickness * max(w, h):
        return f"a thin line or strip ({w}x{h} px), not a figure"
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        biggest = max(contours, key=cv2.contourArea)
        (_c, (rw, rh), _a) = cv2.minAreaRect(biggest)
        area = cv2.contourArea(biggest)
        fill = area / max(rw * rh, 1.0)
        if fill >= max_rect_fill:
            return f"a plain rectangle ({fill:.0%} of its bounding rectangle is filled), likely a building, window or sign"
        solidity = area / max(cv2.contourArea(cv2.convexHull(biggest)), 1.0)
        if solidity >= max_solidity:
            return (f"a plain convex shape ({solidity:.0%} of its convex hull is filled), likely a balloon or a "
                    "cloud, not a figure with a head and limbs")
    return None


def cut_sides(bbox: Box, width: int, height: int, tolerance: int = 2,
              frame: Box | None = None) -> list[str]:
    """The picture edges ``bbox`` touches: there the figure may go on beyond what the panel shows.

    ``frame`` is the inside of the panel's frame line when it has one (x0, y0, x1, y1): a figure cut by
    the frame ends there, a few pixels inside the image.
    """
    x0, y0, x1, y1 = bbox
    fx0, fy0, fx1, fy1 = frame or (0, 0, width, height)
    return [side for side, hit in (("top", y0 <= fy0 + tolerance), ("bottom", y1 >= fy1 - tolerance),
                                   ("left", x0 <= fx0 + tolerance), ("right", x1 >= fx1 - tolerance)) if hit]


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
