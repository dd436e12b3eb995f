"""Putting 1-3 figures in the frame: sizes, positions, a gap between them, busts cut by the frame."""

from __future__ import annotations

import numpy as np

from fitad.synth_styles.figures import Figure, colourize, draw_figure, random_look
from fitad.synth_styles.scene import PlacedFigure, Scene, dilate

FIGURE_GAP = 7  # masks are kept this far apart in Chebyshev distance, so >= 6 free pixels between
ACTIVE_POSES = ("standing", "walking", "arms_up", "running", "sitting")
# Drawn height of a pose in body heights (crown or raised hands to the soles), to size figures.
_POSE_EXTENT = {"standing": 1.1, "walking": 1.1, "running": 1.07, "arms_up": 1.2, "sitting": 0.78}
# Fraction of the inner frame height a figure takes, by how many figures share the panel.
_SIZE_RANGE = {1: (0.4, 0.85), 2: (0.28, 0.7), 3: (0.18, 0.55)}


def _paste(scene: Scene, figure: Figure, visible: np.ndarray, x: int, y: int) -> PlacedFigure:
    """Paint the figure's visible rows at (x, y) and register its mask."""
    h, w = visible.shape
    rgb = colourize(figure, scene.rng)[:h]
    scene.image[y:y + h, x:x + w][visible] = rgb[visible]
    mask = np.zeros((scene.height, scene.width), bool)
    mask[y:y + h, x:x + w] = visible
    joints = {name: (jx + x, jy + y) for name, (jx, jy) in figure.joints.items()}
    return PlacedFigure(mask, figure.pose, joints, figure.head_radius, int(np.count_nonzero(mask)))


def _place_standing(scene: Scene, pose: str, target: float, apart: np.ndarray) -> PlacedFigure | None:
    """A whole figure about ``target`` px tall, feet in the lower part of the frame."""
    rng = scene.rng
    x0, y0, x1, y1 = scene.inner
    figure = draw_figure(pose, target / _POSE_EXTENT[pose], rng, random_look(rng, pose))
    h, w = figure.labels.shape
    if h > y1 - y0 - 8 or w > x1 - x0 - 8:
        return None
    visible = figure.labels > 0
    for _ in range(25):
        slack = (y1 - y0) - h - 8
        bottom = y1 - 4 - int(rng.uniform(0.0, 0.35) * slack)
        x = int(rng.integers(x0 + 4, x1 - 4 - w + 1))
        if Scene.overlap(apart, visible, x, bottom - h) == 0:
            return _paste(scene, figure, visible, x, bottom - h)
    return None


def _place_bust(scene: Scene, target: float, apart: np.ndarray) -> PlacedFigure | None:
    """Head and shoulders ``target`` px tall, cut off by the bottom edge of the frame."""
    rng = scene.rng
    x0, y0, x1, y1 = scene.inner
    figure = draw_figure("bust", target / float(rng.uniform(0.42, 0.55)), rng, random_look(rng, "bust"))
    rows = min(int(target), figure.labels.shape[0])
    visible = figure.labels[:rows] > 0
    columns = np.nonzero(visible.any(axis=0))[0]
    left, right = int(columns.min()), int(columns.max()) + 1
    if right - left > x1 - x0 - 8:
        return None
    visible = visible[:, left:right]
    for _ in range(25):
        x = int(rng.integers(x0 + 4, x1 - 4 - (right - left) + 1))
        if Scene.overlap(apart, visible, x, y1 - rows) == 0:
            figure.joints = {k: (jx - left, jy) for k, (jx, jy) in figure.joints.items()}
            figure.labels = figure.labels[:, left:right]
            return _paste(scene, figure, visible, x, y1 - rows)
    return None


def cast_figures(scene: Scene) -> None:
    """Draw 1-3 non-touching figures into ``scene`` (a figure that finds no room is left out)."""
    rng = scene.rng
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    low, high = _SIZE_RANGE[count]
    inner_height = scene.inner[3] - scene.inner[1]
    apart = np.zeros((scene.height, scene.width), bool)
    for index in range(count):
        bust = index == 0 and rng.random() < 0.22
        pose = "bust" if bust else ACTIVE_POSES[int(rng.integers(len(ACTIVE_POSES)))]
        target = inner_height * float(rng.uniform(max(low, 0.5) if bust else low, high))
        placed = None
        for _ in range(4):  # shrink until it fits beside the others
            placed = _place_bust(scene, target, apart) if bust else _place_standing(scene, pose, target, apart)
            if placed is not None or target < inner_height * 0.16:
                break
            target *= 0.8
        if placed is not None:
            scene.figures.append(placed)
            grown = dilate(placed.mask, FIGURE_GAP, square=True)[FIGURE_GAP:-FIGURE_GAP, FIGURE_GAP:-FIGURE_GAP]
            apart |= grown
