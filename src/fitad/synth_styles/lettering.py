"""Glyph ink: horizontal lines, vertical columns and rotated sound effects as alpha maps.

Every piece of text is rendered on its own into a tight alpha crop, so its ground-truth box is the
bounding box of the ink actually drawn (not font metrics), and its position on the panel is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from fitad.synth_styles.fonts import load_font


@dataclass
class Ink:
    """A tight alpha crop placed at (x, y) in some frame; ``quad`` is the 4 corners around the ink."""
    alpha: np.ndarray  # uint8 (h, w); > 0 wherever the text changes the picture
    x: int
    y: int
    quad: np.ndarray | None = None  # float (4, 2) in the same frame; None = the crop's own corners

    @property
    def size(self) -> tuple[int, int]:
        return self.alpha.shape[1], self.alpha.shape[0]

    def moved(self, dx: int, dy: int) -> "Ink":
        quad = None if self.quad is None else self.quad + (dx, dy)
        return Ink(self.alpha, self.x + dx, self.y + dy, quad)

    def corners(self) -> np.ndarray:
        if self.quad is not None:
            return self.quad
        w, h = self.size
        x, y = self.x, self.y
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], float)


def _tight(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        raise ValueError("text rendered no ink")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_ink(text: str, font_path: str, size: int, stroke: int = 0) -> Ink:
    """``text`` drawn at origin (0, 0) (Pillow's left/ascender anchor), cropped to its ink."""
    font = load_font(font_path, size)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad = 4 + stroke
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=255, stroke_width=stroke,
                               stroke_fill=255)
    alpha = np.asarray(image)
    x0, y0, x1, y1 = _tight(alpha)
    return Ink(alpha[y0:y1, x0:x1].copy(), x0 - (pad - left), y0 - (pad - top))


def _to_origin(pieces: list[Ink]) -> tuple[list[Ink], tuple[int, int]]:
    """Shift pieces so their union starts at (0, 0); returns them and the union's (width, height)."""
    x0 = min(p.x for p in pieces)
    y0 = min(p.y for p in pieces)
    moved = [p.moved(-x0, -y0) for p in pieces]
    return moved, (max(p.x + p.size[0] for p in moved), max(p.y + p.size[1] for p in moved))


def layout_lines(lines: list[str], font_path: str, size: int,
                 align: str = "center") -> tuple[list[Ink], tuple[int, int]]:
    """Horizontal lines one under another with a regular baseline pitch; one :class:`Ink` per line."""
    pitch = round(size * 1.28)
    inks = [render_ink(line, font_path, size) for line in lines]
    widest = max(ink.size[0] for ink in inks)
    pieces = []
    for row, ink in enumerate(inks):
        shift = (widest - ink.size[0]) // 2 if align == "center" else 0
        pieces.append(Ink(ink.alpha, shift, row * pitch + ink.y))
    return _to_origin(pieces)


def layout_columns(columns: list[str], font_path: str, size: int) -> tuple[list[Ink], tuple[int, int]]:
    """Vertical text: glyphs stacked top to bottom, columns from right to left; one Ink per column."""
    cell = round(size * 1.08)
    column_pitch = round(size * 1.35)
    pieces = []
    for index, text in enumerate(columns):
        glyphs = [render_ink(ch, font_path, size) for ch in text]
        width = max(g.size[0] for g in glyphs)
        canvas = np.zeros((cell * len(glyphs) + size, width), np.uint8)
        for row, glyph in enumerate(glyphs):  # centre each glyph in its cell
            gw, gh = glyph.size
            gx, gy = (width - gw) // 2, row * cell + max(0, (cell - gh) // 2)
            np.maximum(canvas[gy:gy + gh, gx:gx + gw], glyph.alpha, out=canvas[gy:gy + gh, gx:gx + gw])
        x0, y0, x1, y1 = _tight(canvas)
        centre_x = -index * column_pitch  # right to left
        pieces.append(Ink(canvas[y0:y1, x0:x1].copy(), centre_x - width // 2 + x0, y0))
    return _to_origin(pieces)


@dataclass
class SoundEffect:
    """Stacked alpha layers of one stylised word (outermost stroke first), rotated together."""
    layers: list[np.ndarray]  # uint8, all the same shape
    quad: np.ndarray          # (4, 2) rotated corners of the unrotated ink box, in layer pixels

    def union(self) -> np.ndarray:
        return np.maximum.reduce(self.layers)


def render_sound_effect(text: str, font_path: str, size: int, strokes: tuple[int, ...], angle: float,
                        jitter: bool, rng: np.random.Generator) -> SoundEffect:
    """A word whose glyphs may vary in size and height, drawn with one or more outline strokes.

    ``strokes`` are outline widths, largest first; the result has one layer per stroke plus the fill.
    The whole word is rotated by ``angle`` degrees (counter-clockwise).
    """
    widest = max(strokes, default=0)
    glyph_sizes = [int(size * (rng.uniform(0.8, 1.2) if jitter else 1.0)) for _ in text]
    lifts = [int(size * rng.uniform(-0.15, 0.15)) if jitter else 0 for _ in text]
    canvas_w = sum(glyph_sizes) * 2 + 4 * widest + 20
    canvas_h = int(size * 2.2) + 4 * widest + 20
    images = [Image.new("L", (canvas_w, canvas_h), 0) for _ in (*strokes, 0)]
    x = widest + 10
    for char, glyph_size, lift in zip(text, glyph_sizes, lifts):
        font = load_font(font_path, glyph_size)
        y = widest + 10 + int(size * 0.3) + lift + (size - glyph_size)
        for image, stroke in zip(images, (*strokes, 0)):
            ImageDraw.Draw(image).text((x, y), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        advance = font.getlength(char) if char.strip() else glyph_size * 0.4
        x += int(advance - (glyph_size * 0.04 if jitter else 0))
    layers = [np.asarray(image) for image in images]
    x0, y0, x1, y1 = _tight(layers[0])
    layers = [layer[y0:y1, x0:x1] for layer in layers]
    return _rotate(layers, angle)


def _rotate(layers: list[np.ndarray], angle: float) -> SoundEffect:
    h, w = layers[0].shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    turned = corners @ matrix[:, :2].T + matrix[:, 2]
    shift = -turned.min(axis=0) + 2
    matrix[:, 2] += shift
    out_w, out_h = (int(math.ceil(v)) + 4 for v in (turned.max(axis=0) - turned.min(axis=0)))
    rotated = [cv2.warpAffine(np.ascontiguousarray(layer), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderValue=0) for layer in layers]
    x0, y0, x1, y1 = _tight(np.maximum.reduce(rotated))
    quad = turned + shift - (x0, y0)
    return SoundEffect([layer[y0:y1, x0:x1].copy() for layer in rotated], quad)
