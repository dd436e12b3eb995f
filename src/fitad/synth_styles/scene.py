"""A panel under construction: the picture, the figures' visible masks and the text ground truth.

Whatever is painted after the figures goes through :meth:`Scene.cover`, which removes the covered
pixels from every figure's visible mask and remembers what covered it. Text-bearing things (balloons,
captions, sound effects, free text) also reserve their area plus a margin, so no later text can hide
part of an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fitad.synth_styles.lettering import Ink

TEXT_GAP = 4  # pixels kept free around every text-bearing element


@dataclass
class PlacedFigure:
    mask: np.ndarray                         # bool (H, W): visible pixels, shrinks as things cover it
    pose: str
    joints: dict[str, tuple[float, float]]   # panel pixels
    head_radius: float
    drawn_area: int                          # pixels before anything covered it
    occluded_by: set[str] = field(default_factory=set)


def dilate(mask: np.ndarray, radius: int, square: bool = False) -> np.ndarray:
    """``mask`` grown by a disc (or square) of ``radius``, on a canvas padded by ``radius`` all round."""
    if radius <= 0:
        return mask
    shape = cv2.MORPH_RECT if square else cv2.MORPH_ELLIPSE
    kernel = cv2.getStructuringElement(shape, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.pad(mask.astype(np.uint8), radius), kernel) > 0


class Scene:
    def __init__(self, rng: np.random.Generator, split: str, width: int, height: int,
                 inner: tuple[int, int, int, int]):
        self.rng, self.split = rng, split
        self.width, self.height = width, height
        self.inner = inner                   # (x0, y0, x1, y1) inside the frame, x1/y1 exclusive
        self.image = np.full((height, width, 3), 255, np.uint8)
        self.figures: list[PlacedFigure] = []
        self.reserved = np.zeros((height, width), bool)   # text-bearing areas plus TEXT_GAP
        self.texts: list[dict] = []
        self.fonts: set[str] = set()

    # ------------------------------------------------------------------ geometry tests

    def inside(self, x: int, y: int, w: int, h: int, margin: int = 2) -> bool:
        x0, y0, x1, y1 = self.inner
        return x >= x0 + margin and y >= y0 + margin and x + w <= x1 - margin and y + h <= y1 - margin

    def figures_union(self) -> np.ndarray:
        union = np.zeros((self.height, self.width), bool)
        for figure in self.figures:
            union |= figure.mask
        return union

    @staticmethod
    def overlap(layer: np.ndarray, mask: np.ndarray, x: int, y: int) -> int:
        """Pixels of the local ``mask`` placed at (x, y) that fall on ``layer`` (must be inside)."""
        h, w = mask.shape
        return int(np.count_nonzero(layer[y:y + h, x:x + w] & mask))

    def free_for_text(self, mask: np.ndarray, x: int, y: int) -> bool:
        h, w = mask.shape
        return self.inside(x, y, w, h) and self.overlap(self.reserved, mask, x, y) == 0

    # ------------------------------------------------------------------ painting bookkeeping

    def cover(self, mask: np.ndarray, x: int, y: int, kind: str, reserve: bool = True) -> None:
        """Record that ``mask`` at (x, y) is painted over: figures lose those pixels."""
        h, w = mask.shape
        for figure in self.figures:
            window = figure.mask[y:y + h, x:x + w]
            if (window & mask).any():
                window &= ~mask
                figure.occluded_by.add(kind)
        if reserve:
            grown = dilate(mask, TEXT_GAP)
            gx0, gy0 = x - TEXT_GAP, y - TEXT_GAP
            cx0, cy0 = max(gx0, 0), max(gy0, 0)
            cx1, cy1 = min(gx0 + grown.shape[1], self.width), min(gy0 + grown.shape[0], self.height)
            self.reserved[cy0:cy1, cx0:cx1] |= grown[cy0 - gy0:cy1 - gy0, cx0 - gx0:cx1 - gx0]

    def stamp(self, alpha: np.ndarray, x: int, y: int, colour) -> np.ndarray:
        """Alpha-blend ``colour`` through ``alpha`` at (x, y); returns the footprint (alpha > 0)."""
        h, w = alpha.shape
        region = self.image[y:y + h, x:x + w]
        a = alpha.astype(np.float32)[..., None] / 255.0
        blended = region.astype(np.float32) * (1.0 - a) + np.asarray(colour, np.float32) * a
        region[:] = np.rint(blended).astype(np.uint8)
        return alpha > 0

    def add_text(self, ink: Ink, kind: str, lang: str, text: str, font: str, colour,
                 layers: list[tuple[np.ndarray, tuple]] | None = None) -> None:
        """Draw one line/column/word and record its ground truth (the box comes from the ink itself).

        ``layers`` (alpha, colour) pairs, outermost first, replace the single ``colour`` for lettering
        with outline strokes; ``ink.alpha`` must then be their union.
        """
        if not self.inside(ink.x, ink.y, ink.size[0], ink.size[1], margin=0):
            raise AssertionError(f"text {text!r} would leave the frame")
        for alpha, layer_colour in layers or [(ink.alpha, colour)]:
            self.stamp(alpha, ink.x, ink.y, layer_colour)
        footprint = ink.alpha > 0
        self.cover(footprint, ink.x, ink.y, kind, reserve=True)
        ys, xs = np.nonzero(footprint)
        box = [ink.x + int(xs.min()), ink.y + int(ys.min()), ink.x + int(xs.max()) + 1, ink.y + int(ys.max()) + 1]
        quad = np.rint(ink.corners())
        quad[:, 0] = np.clip(quad[:, 0], 0, self.width)
        quad[:, 1] = np.clip(quad[:, 1], 0, self.height)
        name = Path(font).name
        self.fonts.add(name)
        self.texts.append({"box": box, "polygon": quad.astype(int).tolist(), "kind": kind, "lang": lang,
                           "text": text, "font": name})
