"""Blocks of lettering (the lines of a balloon, a caption's lines, vertical columns) ready to place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitad.synth_styles import phrases
from fitad.synth_styles.fonts import BUNDLED_STYLE, matched_size, pick_font
from fitad.synth_styles.lettering import Ink, layout_columns, layout_lines
from fitad.synth_styles.scene import Scene

TEXT_INKS = ((18, 18, 18), (25, 28, 60), (70, 20, 20), (40, 40, 40))


@dataclass
class Lettering:
    pieces: list[Ink]        # one per text entry, positioned inside the block (top-left at 0, 0)
    texts: list[str]
    size: tuple[int, int]    # block width, height
    kind: str                # bubble | narration | vertical
    lang: str
    font: str
    font_size: int
    colour: tuple[int, int, int]

    def fits(self, area: np.ndarray, left: int, top: int) -> bool:
        """Whether every inked pixel, with the block at (left, top), lies on ``area`` (bool)."""
        for piece in self.pieces:
            x, y = left + piece.x, top + piece.y
            w, h = piece.size
            if x < 0 or y < 0 or x + w > area.shape[1] or y + h > area.shape[0]:
                return False
            if not area[y:y + h, x:x + w][piece.alpha > 0].all():
                return False
        return True

    def write(self, scene: Scene, left: int, top: int) -> None:
        for piece, text in zip(self.pieces, self.texts):
            scene.add_text(piece.moved(left, top), self.kind, self.lang, text, self.font, self.colour)


def font_size(scene: Scene, low: float, high: float) -> int:
    x0, y0, x1, y1 = scene.inner
    return max(13, int(min(x1 - x0, y1 - y0) * scene.rng.uniform(low, high)))


def _language(scene: Scene) -> str:
    return "ko" if scene.rng.random() < 0.6 else "en"


def _ink(scene: Scene) -> tuple[int, int, int]:
    return TEXT_INKS[int(scene.rng.integers(len(TEXT_INKS)))]


def dialogue(scene: Scene, max_lines: int = 4) -> Lettering:
    rng, lang = scene.rng, _language(scene)
    lines = phrases.dialogue_lines(rng, lang, max_lines)
    styles = ("handwritten", "gothic", "serif", "gothic", BUNDLED_STYLE)
    font = pick_font(rng, scene.split, "".join(lines), styles)
    size = matched_size(font, font_size(scene, 0.03, 0.048))
    pieces, block = layout_lines(lines, font, size)
    return Lettering(pieces, lines, block, "bubble", lang, font, size, _ink(scene))


def caption(scene: Scene) -> Lettering:
    rng, lang = scene.rng, _language(scene)
    lines = phrases.caption_lines(rng, lang)
    font = pick_font(rng, scene.split, "".join(lines), ("serif", "gothic", "handwritten", BUNDLED_STYLE))
    size = matched_size(font, font_size(scene, 0.027, 0.04))
    pieces, block = layout_lines(lines, font, size, align="left")
    return Lettering(pieces, lines, block, "narration", lang, font, size, _ink(scene))


def columns(scene: Scene) -> Lettering:
    rng = scene.rng
    texts = phrases.vertical_columns(rng)
    font = pick_font(rng, scene.split, "".join(texts), ("brush", "serif", "gothic", "handwritten"))
    size = matched_size(font, font_size(scene, 0.034, 0.054))
    pieces, block = layout_columns(texts, font, size)
    return Lettering(pieces, texts, block, "vertical", "ko", font, size, _ink(scene))

