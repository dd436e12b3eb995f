"""Characters drawn from a pose skeleton as outlined strokes.

Each body part is a capsule chain or a polygon drawn in two passes, a dark outline pass and a fill
pass, into a *label map* (one small integer per material: skin, hair, top...). The label map is the
exact silhouette (no anti-aliasing, so the mask is unambiguous) and is coloured afterwards, either
in colour or in monochrome with hatching and screentone, by :func:`colourize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fitad.synth_styles import hair_and_face
from fitad.synth_styles.labels import ACCENT, BOTTOM, HAIR, OUTLINE, SHINE, SHOES, SKIN, TOP
from fitad.synth_styles.poses import jittered_pose

HEAD_RADIUS = 0.08  # in body heights


@dataclass(frozen=True)
class Look:
    """How a figure is dressed and drawn (chosen per figure from the panel's random stream)."""
    hair: str          # spiky | long | bob | short | ponytail
    top: str           # shirt | hoodie | coat
    bottom: str        # pants | skirt | shorts
    short_sleeves: bool
    eyes: str          # round | big | line
    facing: float      # -1..1, shifts the face sideways
    mirror: bool
    monochrome: bool


@dataclass
class Figure:
    labels: np.ndarray                  # uint8 (h, w) label map; 0 = not the figure
    joints: dict[str, tuple[float, float]]  # canvas pixels
    ground: tuple[float, float]         # canvas pixel under the figure where it stands
    head_radius: float                  # pixels
    look: Look
    pose: str


def random_look(rng: np.random.Generator, pose: str) -> Look:
    tops = ("shirt", "hoodie") if pose == "sitting" else ("shirt", "hoodie", "coat")
    bottoms = ("pants", "shorts") if pose == "sitting" else ("pants", "skirt", "shorts")
    return Look(hair=("spiky", "long", "bob", "short", "ponytail")[int(rng.integers(5))],
                top=tops[int(rng.integers(len(tops)))], bottom=bottoms[int(rng.integers(len(bottoms)))],
                short_sleeves=bool(rng.random() < 0.35), eyes=("round", "big", "line")[int(rng.integers(3))],
                facing=float(rng.uniform(-1, 1)), mirror=bool(rng.random() < 0.5),
                monochrome=bool(rng.random() < 0.45))


class Pen:
    """Draws parts given in body-height units into a label map (outline pass, then fill pass)."""

    def __init__(self, labels: np.ndarray, scale: float, origin: tuple[float, float], mirror: bool,
                 outline: int):
        self.labels, self.scale, self.origin, self.outline = labels, scale, origin, outline
        self.sign = -1.0 if mirror else 1.0

    def p(self, xy) -> tuple[int, int]:
        return (int(round(self.origin[0] + self.sign * xy[0] * self.scale)),
                int(round(self.origin[1] + xy[1] * self.scale)))

    def px(self, length: float) -> int:
        return max(1, int(round(length * self.scale)))

    def chain(self, points, widths, fills) -> None:
        """Capsules along ``points``; segment k has width ``widths[k]`` and label ``fills[k]``."""
        ends = [self.p(pt) for pt in points]
        for k in range(len(ends) - 1):
            cv2.line(self.labels, ends[k], ends[k + 1], OUTLINE, self.px(widths[k]) + 2 * self.outline)
        for k in range(len(ends) - 1):
            cv2.line(self.labels, ends[k], ends[k + 1], fills[k], self.px(widths[k]))

    def poly(self, points, fill: int) -> None:
        pts = np.array([self.p(pt) for pt in points], np.int32)
        cv2.fillPoly(self.labels, [pts], fill)
        cv2.polylines(self.labels, [pts], True, OUTLINE, 2 * self.outline)

    def ellipse(self, centre, axes, fill: int, angle: float = 0.0, outlined: bool = True) -> None:
        c, a, b = self.p(centre), self.px(axes[0]), self.px(axes[1])
        if outlined:
            cv2.ellipse(self.labels, c, (a + self.outline, b + self.outline), self.sign * angle, 0, 360,
                        OUTLINE, -1)
        cv2.ellipse(self.labels, c, (a, b), self.sign * angle, 0, 360, fill, -1)

    def stroke(self, points, width_px: int | None = None, closed: bool = False) -> None:
        pts = np.array([self.p(pt) for pt in points], np.int32)
        cv2.polylines(self.labels, [pts], closed, OUTLINE, width_px or max(1, self.outline - 1))


def _lerp(a, b, t):
    return a + (b - a) * t


def _torso(j) -> list:
    waist_l = _lerp(j["l_sh"], j["l_hip"], 0.62) + (0.015, 0)
    waist_r = _lerp(j["r_sh"], j["r_hip"], 0.62) - (0.015, 0)
    return [j["l_sh"] + (-0.03, -0.01), j["neck"] + (0, 0.01), j["r_sh"] + (0.03, -0.01), waist_r,
            j["r_hip"] + (0.03, 0.025), j["l_hip"] + (-0.03, 0.025), waist_l]


def _coat(j) -> list:
    hem_y = max(j["l_knee"][1], j["r_knee"][1]) + 0.06
    left = min(j["l_knee"][0], j["r_knee"][0]) - 0.08
    right = max(j["l_knee"][0], j["r_knee"][0]) + 0.08
    return [j["l_sh"] + (-0.035, -0.01), j["neck"] + (0, 0.01), j["r_sh"] + (0.035, -0.01),
            j["r_hip"] + (0.05, 0), np.array([right, hem_y]), np.array([left, hem_y]), j["l_hip"] + (-0.05, 0)]


def _skirt(j) -> list:
    top, pelvis = j["pelvis"][1] - 0.04, j["pelvis"]
    return [np.array([j["l_hip"][0] - 0.045, top]), np.array([j["r_hip"][0] + 0.045, top]),
            pelvis + (0.15, 0.17), pelvis + (-0.15, 0.17)]


def _draw_body(pen: Pen, j, look: Look, r: float) -> None:
    """Back to front: back hair, legs, neck, clothes, hood, arms; head and face come after."""
    hair_and_face.back_hair(pen, j["head"], r, look.hair)
    thigh, shin = (BOTTOM, BOTTOM) if look.bottom == "pants" else (
        (BOTTOM, SKIN) if look.bottom == "shorts" else (SKIN, SKIN))
    toe = 1.0 if look.facing >= 0 else -1.0
    for side in ("l", "r"):
        pen.chain([j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_foot"]], [0.07, 0.055], [thigh, shin])
        pen.chain([j[f"{side}_foot"], j[f"{side}_foot"] + (0.05 * toe, 0.005)], [0.045], [SHOES])
    pen.chain([j["neck"] + (0, 0.02), j["head"]], [0.045], [SKIN])
    pen.poly(_coat(j) if look.top == "coat" else _torso(j), TOP)
    if look.bottom == "skirt":
        pen.poly(_skirt(j), BOTTOM)
    if look.top == "coat":  # front opening and buttons
        hem = _coat(j)[4][1]
        pen.stroke([j["neck"] + (0, 0.03), (j["pelvis"][0], hem)])
        for t in (0.25, 0.45, 0.65):
            pen.ellipse(_lerp(j["neck"], j["pelvis"], t) + (0.02, 0), (0.008, 0.008), OUTLINE, outlined=False)
    elif look.top == "hoodie":
        pen.ellipse(j["head"] + (0, 0.2 * r), (1.3 * r, 1.2 * r), TOP)
        for dx in (-0.02, 0.02):
            pen.stroke([j["neck"] + (dx, 0.02), j["neck"] + (dx * 1.3, 0.11)])
        pocket = _lerp(j["neck"], j["pelvis"], 0.78)
        pen.stroke([pocket + (-0.06, 0), pocket + (0.06, 0), pocket + (0.075, 0.07), pocket + (-0.075, 0.07)],
                   closed=True)
    else:
        pen.stroke([j["neck"] + (-0.035, 0.0), j["neck"] + (0, 0.06), j["neck"] + (0.035, 0.0)])
    forearm = SKIN if look.short_sleeves else TOP
    for side in ("l", "r"):
        pen.chain([j[f"{side}_sh"], j[f"{side}_el"], j[f"{side}_hand"]], [0.052, 0.043], [TOP, forearm])
        pen.ellipse(j[f"{side}_hand"], (0.03, 0.03), SKIN)


def draw_figure(pose: str, body_height: float, rng: np.random.Generator, look: Look | None = None) -> Figure:
    """A figure in ``pose`` whose standing height would be ``body_height`` pixels, cropped to its ink."""
    look = look or random_look(rng, pose)
    joints = jittered_pose(pose, rng)
    r = HEAD_RADIUS * (1.08 if pose == "bust" else 1.0)
    xs = [v[0] for v in joints.values()]
    ys = [v[1] for v in joints.values()]
    margin = 0.25
    width = int(math.ceil((max(xs) - min(xs) + 2 * margin) * body_height)) + 4
    height = int(math.ceil((0.06 - min(ys) + margin) * body_height)) + 4
    centre_x = (max(xs) + min(xs)) / 2
    origin = (width / 2 - (-centre_x if look.mirror else centre_x) * body_height,
              height - 0.05 * body_height)
    outline = int(min(7, max(2, round(body_height * 0.0075))))
    labels = np.zeros((height, width), np.uint8)
    pen = Pen(labels, body_height, origin, look.mirror, outline)
    _draw_body(pen, joints, look, r)
    pen.ellipse(joints["head"], (r, 1.1 * r), SKIN)
    hair_and_face.face(pen, joints["head"], r, look)
    hair_and_face.front_hair(pen, joints["head"], r, look.hair, rng)
    ys_ink, xs_ink = np.nonzero(labels)
    x0, y0 = int(xs_ink.min()), int(ys_ink.min())
    crop = labels[y0:int(ys_ink.max()) + 1, x0:int(xs_ink.max()) + 1].copy()
    canvas_joints = {name: (pen.p(v)[0] - x0, pen.p(v)[1] - y0) for name, v in joints.items()}
    ground = (pen.p((joints["pelvis"][0], 0.0))[0] - x0, pen.p((0.0, 0.0))[1] - y0)
    return Figure(crop, canvas_joints, ground, r * body_height, look, pose)


# ------------------------------------------------------------------------------------- colouring

_SKINS = ((255, 226, 200), (243, 200, 165), (226, 176, 136), (196, 142, 104), (150, 104, 76))
_HAIRS = ((38, 30, 30), (110, 66, 34), (232, 204, 126), (196, 64, 52), (70, 92, 168), (226, 226, 232),
          (40, 40, 70))
_INKS = ((20, 20, 24), (44, 30, 26), (24, 28, 54))


def _bright(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.uint8([[[int(rng.integers(0, 180)), int(rng.integers(60, 200)), int(rng.integers(120, 240))]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _pattern(shape, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Hatching (diagonal strokes) or screentone (dot grid) as a boolean ink map."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    if kind == "hatch":
        period = int(rng.integers(4, 8))
        return ((xs + ys) % period) < max(1, period // 3)
    pitch = int(rng.integers(4, 7))
    dy, dx = ys % pitch - pitch // 2, xs % pitch - pitch // 2
    return dx * dx + dy * dy <= (pitch * 0.3) ** 2


def colourize(figure: Figure, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 image of the figure's label map (pixels outside the figure are undefined)."""
    look = figure.look
    ink = _INKS[int(rng.integers(len(_INKS)))]
    palette = np.zeros((9, 3), np.uint8)
    palette[OUTLINE], palette[SHINE] = ink, (255, 255, 255)
    textures: list[tuple[int, str]] = []
    if look.monochrome:
        grey = lambda v: (v, v, v)  # noqa: E731
        palette[SKIN] = grey(255)
        palette[HAIR] = grey(int(rng.choice([35, 120, 250])))
        palette[TOP] = grey(int(rng.choice([255, 200, 150])))
        palette[BOTTOM] = grey(int(rng.choice([60, 170, 255])))
        palette[SHOES], palette[ACCENT] = grey(40), grey(90)
        for label in (TOP, BOTTOM, HAIR):
            if palette[label][0] > 100 and rng.random() < 0.6:
                textures.append((label, "hatch" if rng.random() < 0.5 else "dots"))
    else:
        palette[SKIN] = _SKINS[int(rng.integers(len(_SKINS)))]
        palette[HAIR] = _HAIRS[int(rng.integers(len(_HAIRS)))]
        palette[TOP], palette[BOTTOM], palette[ACCENT] = _bright(rng), _bright(rng), _bright(rng)
        palette[SHOES] = (int(rng.integers(30, 90)),) * 3
    rgb = palette[figure.labels]
    for label, kind in textures:
        rgb[(figure.labels == label) & _pattern(figure.labels.shape, kind, rng)] = ink
    return rgb
