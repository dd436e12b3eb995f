"""Fixtures of the data-preparation tests: small synth panels and hand-made images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Eight small fitad.synth panels (320-448 px) with their ground truth."""
    from fitad.config import SynthConfig
    from fitad.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(SynthConfig(n=8, seed=0, min_side=320, max_side=448), out, progress=False)
    return out


def draw_figure(draw: ImageDraw.ImageDraw, x: int, y: int, scale: float = 1.0,
                mask: bool = False) -> tuple[int, int, int, int]:
    """A simple outlined figure (head, body, legs); returns its bbox (x1/y1 exclusive).

    With ``mask`` every part is drawn as 255 (for an "L" image of the figure's pixels).
    """
    s = scale
    w = max(3, int(4 * s))
    skin, body, legs, outline = ((255,) * 4 if mask else
                                 ((250, 220, 200), (90, 140, 220), (60, 60, 60), (10, 10, 10)))
    draw.ellipse((x + 20 * s, y, x + 60 * s, y + 40 * s), fill=skin, outline=outline, width=w)
    draw.rectangle((x + 10 * s, y + 40 * s, x + 70 * s, y + 110 * s), fill=body, outline=outline, width=w)
    draw.rectangle((x + 15 * s, y + 110 * s, x + 35 * s, y + 160 * s), fill=legs, outline=outline, width=w)
    draw.rectangle((x + 45 * s, y + 110 * s, x + 65 * s, y + 160 * s), fill=legs, outline=outline, width=w)
    return int(x + 10 * s), int(y), int(x + 70 * s) + 1, int(y + 160 * s) + 1


def figure_panel(size=(360, 300), figures=((40, 60),), frame: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RGB panel with outlined figures on paper, a black frame, and the figures' exact mask."""
    img = Image.new("RGB", size, (250, 250, 246))
    draw = ImageDraw.Draw(img)
    mask = Image.new("L", size, 0)
    mdraw = ImageDraw.Draw(mask)
    for fx, fy in figures:
        draw_figure(draw, fx, fy)
        draw_figure(mdraw, fx, fy, mask=True)
    if frame:
        draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=(0, 0, 0), width=5)
    m = np.asarray(mask).copy()
    if frame:
        m[:5], m[-5:], m[:, :5], m[:, -5:] = 0, 0, 0, 0
    return np.asarray(img).copy(), m


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max((a | b).sum(), 1))
