"""One styled panel: size and frame, background, figures, then balloons, captions, columns and SFX.

Everything is drawn from one random stream seeded by the panel's own seed, in a fixed order, so the
same (seed, split) gives the same pixels. Painting order matters for the ground truth: figures come
before anything that can cover them, and text-bearing elements never overlap each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitad.synth_styles.backgrounds import KINDS, paint_background
from fitad.synth_styles.balloons import BALLOON_KINDS
from fitad.synth_styles.blocks import dialogue
from fitad.synth_styles.captions import place_caption, place_sound_effect
from fitad.synth_styles.cast import cast_figures
from fitad.synth_styles.fonts import check_split
from fitad.synth_styles.scene import Scene, dilate
from fitad.synth_styles.speech import place_crossing, place_speech, place_vertical

GENERATOR = "synth_styles"
SHAPES = ("portrait", "landscape", "square", "strip")
# Chance per panel of each kind of overlay (balloons proper are nearly always there).
P_CROSSING, P_SFX, P_CAPTION, P_VERTICAL = 0.38, 0.5, 0.5, 0.42
FIGURE_CLEARANCE = 5  # ordinary balloons and captions stay this far from figures


@dataclass
class StyledPanel:
    image: np.ndarray                   # RGB uint8 (H, W, 3)
    character_masks: list[np.ndarray]   # uint8 (H, W), 255 where character k is visible
    meta: dict                          # the JSON fields, less the file names

    @property
    def subject_mask(self) -> np.ndarray:
        union = np.zeros(self.image.shape[:2], np.uint8)
        for mask in self.character_masks:
            np.maximum(union, mask, out=union)
        return union


def _panel_size(rng: np.random.Generator) -> tuple[int, int]:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if shape == "portrait":
        width = int(rng.integers(512, 761))
        height = min(1024, int(width * rng.uniform(1.25, 1.6)))
    elif shape == "landscape":
        height = int(rng.integers(512, 701))
        width = min(1024, int(height * rng.uniform(1.3, 1.9)))
    elif shape == "square":
        width = height = int(rng.integers(512, 1025))
    else:  # a tall webtoon strip
        width, height = int(rng.integers(512, 641)), int(rng.integers(900, 1025))
    return width, height


def _frame(rng: np.random.Generator) -> tuple[int, int]:
    """(gutter, border): white margin outside the frame and the frame line's width (0 = none)."""
    gutter = 0 if rng.random() < 0.45 else int(rng.integers(8, 41))
    border = 0 if rng.random() < 0.15 else int(rng.integers(2, 10))
    return gutter, border


def _paint_frame(scene: Scene, gutter: int, border: int) -> None:
    """Frame line just outside the inner area; the gutter beyond it stays paper white."""
    if border:
        x0, y0, x1, y1 = scene.inner
        ink = (18, 18, 20)
        scene.image[y0 - border:y0, x0 - border:x1 + border] = ink
        scene.image[y1:y1 + border, x0 - border:x1 + border] = ink
        scene.image[y0 - border:y1 + border, x0 - border:x0] = ink
        scene.image[y0 - border:y1 + border, x1:x1 + border] = ink


def _speakers(scene: Scene):
    """Figures in turn as speakers (None when the panel has none)."""
    index = 0
    while True:
        yield scene.figures[index % len(scene.figures)] if scene.figures else None
        index += 1


def _compose(seed: int, split: str) -> tuple[Scene, str]:
    rng = np.random.default_rng(seed)
    width, height = _panel_size(rng)
    gutter, border = _frame(rng)
    edge = gutter + border
    scene = Scene(rng, split, width, height, (edge, edge, width - edge, height - edge))
    background = KINDS[int(rng.integers(len(KINDS)))]
    x0, y0, x1, y1 = scene.inner
    scene.image[y0:y1, x0:x1] = paint_background(background, rng, y1 - y0, x1 - x0)
    cast_figures(scene)
    _paint_frame(scene, gutter, border)
    zone = np.zeros((height, width), bool)
    if scene.figures:
        zone = dilate(scene.figures_union(), FIGURE_CLEARANCE)[FIGURE_CLEARANCE:-FIGURE_CLEARANCE,
                                                                FIGURE_CLEARANCE:-FIGURE_CLEARANCE]
    speakers = _speakers(scene)
    if rng.random() < P_CROSSING:
        place_crossing(scene)
    if rng.random() < P_SFX:
        place_sound_effect(scene)
    if rng.random() < P_CAPTION:
        place_caption(scene, zone)
    if rng.random() < P_VERTICAL:
        place_vertical(scene, next(speakers), zone)
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.05, 0.4, 0.35, 0.2]))):
        shape = BALLOON_KINDS[int(rng.choice(len(BALLOON_KINDS), p=[0.4, 0.25, 0.15, 0.2]))]
        place_speech(scene, dialogue(scene), shape, next(speakers), zone)
    return scene, background


def render_panel(seed: int, split: str = "dev") -> StyledPanel:
    """Draw the panel whose recorded seed is ``seed`` (the split picks the fonts it may use).

    :func:`synthesize_styles` gives panel i the seed ``seed + i`` (dev) or ``1_000_003 + seed + i``
    (holdout), so ``render_panel(meta["seed"], meta["split"])`` redraws any written panel.
    """
    check_split(split)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    scene, background = _compose(int(seed), split)
    masks, characters = [], []
    for figure in scene.figures:
        visible = figure.mask
        if not visible.any():  # fully hidden figures are not characters the picture shows
            continue
        ys, xs = np.nonzero(visible)
        masks.append(visible.astype(np.uint8) * 255)
        characters.append({"bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                           "area": int(len(xs)), "pose": figure.pose,
                           "occluded_by": sorted(figure.occluded_by)})
    meta = {"width": scene.width, "height": scene.height, "seed": int(seed), "split": split,
            "generator": GENERATOR, "background": background, "texts": scene.texts,
            "characters": characters, "fonts_used": sorted(scene.fonts)}
    return StyledPanel(scene.image, masks, meta)

