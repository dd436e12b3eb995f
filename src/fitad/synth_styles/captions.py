"""Narration boxes at the frame's corners and edges, and big rotated sound effects."""

from __future__ import annotations

import numpy as np

from fitad.synth_styles import phrases
from fitad.synth_styles.balloons import build_balloon, paint_balloon
from fitad.synth_styles.blocks import caption
from fitad.synth_styles.fonts import BUNDLED_STYLE, matched_size, pick_font
from fitad.synth_styles.lettering import Ink, render_sound_effect
from fitad.synth_styles.scene import Scene

CAPTION_FILLS = ((255, 255, 255), (255, 248, 200), (228, 240, 255), (240, 240, 236))
SFX_FILLS = ((230, 45, 40), (250, 212, 40), (255, 255, 255), (30, 30, 30), (60, 120, 220), (250, 140, 30),
             (150, 60, 200))
SFX_INK = (15, 15, 18)


def place_caption(scene: Scene, figure_zone: np.ndarray) -> bool:
    """A rectangular caption at a corner or along the top/bottom edge, clear of the figures."""
    rng = scene.rng
    lettering = caption(scene)
    inverse = rng.random() < 0.15  # white on black, as for flashbacks
    fill = (25, 25, 28) if inverse else CAPTION_FILLS[int(rng.integers(len(CAPTION_FILLS)))]
    if inverse:
        lettering.colour = (250, 250, 250)
    outline = max(2, round(lettering.font_size * 0.09))
    pad = outline + float(rng.uniform(0.35, 0.75)) * lettering.font_size
    bw, bh = lettering.size
    box = build_balloon("box", bw / 2 + pad, bh / 2 + pad, outline, rng)
    h, w = box.mask.shape
    left, top = box.centre[0] - bw // 2, box.centre[1] - bh // 2
    x0, y0, x1, y1 = scene.inner
    inset = 0 if rng.random() < 0.5 else int(rng.integers(6, 20))
    spots = [(x0 + inset, y0 + inset), (x1 - w - inset, y0 + inset), (x0 + inset, y1 - h - inset),
             (x1 - w - inset, y1 - h - inset), ((x0 + x1 - w) // 2, y0 + inset)]
    for k in rng.permutation(len(spots)):
        x, y = spots[k]
        if not (scene.inside(x, y, w, h, margin=0) and Scene.overlap(scene.reserved, box.mask, x, y) == 0):
            continue
        if Scene.overlap(figure_zone, box.mask, x, y):
            continue
        paint_balloon(scene.image, box, x, y, fill, SFX_INK)
        scene.cover(box.mask, x, y, "narration")
        lettering.write(scene, x + left, y + top)
        return True
    return False


def place_sound_effect(scene: Scene) -> bool:
    """A stylised sound word on the background; it may graze a figure's edge (the figure loses those pixels)."""
    rng = scene.rng
    lang = "ko" if rng.random() < 0.6 else "en"
    word = phrases.pick(rng, phrases.SOUND_EFFECTS[lang])
    styles = (("brush", "gothic", "serif", BUNDLED_STYLE) if lang == "ko"
              else ("serif", "gothic", "handwritten", BUNDLED_STYLE))
    font = pick_font(rng, scene.split, word, styles)
    x0, y0, x1, y1 = scene.inner
    size = matched_size(font, int(min(x1 - x0, y1 - y0) * rng.uniform(0.1, 0.2)))
    angle, jitter = float(rng.uniform(-35, 35)), bool(rng.random() < 0.5)
    fill = SFX_FILLS[int(rng.integers(len(SFX_FILLS)))]
    double = rng.random() < 0.4
    for _ in range(3):  # shrink until the word fits the frame comfortably
        stroke = max(3, int(size * rng.uniform(0.05, 0.09)))
        strokes = (int(stroke * 1.9), stroke) if double else (stroke,)
        effect = render_sound_effect(word, font, size, strokes, angle, jitter, rng)
        union = effect.union()
        h, w = union.shape
        if w < (x1 - x0) * 0.85 and h < (y1 - y0) * 0.6:
            break
        size = int(size * 0.7)
    else:
        return False
    colours = [SFX_INK, (255, 255, 255) if fill != (255, 255, 255) else SFX_INK][:len(strokes)] + [fill]
    footprint = union > 0
    area = int(np.count_nonzero(footprint))
    for _ in range(40):
        x = int(rng.integers(x0 + 3, max(x0 + 4, x1 - w - 3)))
        y = int(rng.integers(y0 + 3, max(y0 + 4, y1 - h - 3)))
        if not scene.free_for_text(footprint, x, y):
            continue
        grazes = [Scene.overlap(f.mask, footprint, x, y) for f in scene.figures]
        if sum(grazes) > 0.12 * area or any(g > 0.15 * f.drawn_area for g, f in zip(grazes, scene.figures)):
            continue
        ink = Ink(union, x, y, effect.quad + (x, y))
        scene.add_text(ink, "sfx", lang, word, font, None, layers=list(zip(effect.layers, colours)))
        return True
    return False
