"""LetterNet: a small U-Net that marks lettering on a raw panel, a second opinion beside the OCR detector.

RapidOCR's detector was trained on printed text lines; big stylised sound effects (one brush-drawn
syllable, outlined and rotated) and some fonts it does not see at all. LetterNet is trained on the
project's synthetic panels (``fitad.synth`` and the ``dev`` split of ``fitad.synth_styles``) to mark
the polygons of every text kind: balloon lines, narration, vertical columns and sound effects. Its
regions become extra text polygons in :func:`fitad.prep.text.detect_text` (like every pass, adding only
what the detector has not already found), and a detection it reads as lettering is kept by
:func:`fitad.prep.text.drop_line_art` even where the glyph rules would call it line art (outlined
sound effects drawn over a figure have no glyph standing apart from the drawing).

Input: RGB at ``INPUT_SIDE`` px on the longer side (padded to a multiple of 16); output: per-pixel
lettering logits at that size. Shipped as ONNX (under 0.5 MB) and run with onnxruntime.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, ClassVar

import cv2
import numpy as np

from fitad.prep.training_panels import cached_pairs, on_canvas, read_panel
from fitad.prep.unet import NetworkTrainSettings, OnnxNet, build_unet, export_onnx, fit_unet, logistic, padded

INPUT_SIDE = 320
CROP = 192
MIN_DENY_PX = 8  # polygons narrower than this at the network's size are too small for it to deny
PAIRS_VERSION = 1  # bump when the training arrays change meaning (the cache then draws them again)
BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "models" / "letternet.onnx"


def letternet_file(config) -> Path | None:
    """The LetterNet ONNX file the config asks for (``prep.letternet_model`` or the bundled one); None when off."""
    if not config.letternet:
        return None
    return Path(config.letternet_model).expanduser() if config.letternet_model else BUNDLED


def prepare_input(rgb: np.ndarray, side: int = INPUT_SIDE) -> tuple[np.ndarray, float]:
    """(1, 3, H, W) float32 network input in [-1, 1], zero padded, and the scale applied to ``rgb``."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
    x = np.zeros((3, padded(size[1]), padded(size[0])), np.float32)
    x[:, :size[1], :size[0]] = small.transpose(2, 0, 1)
    return x[None], scale


def polygons_from_probability(prob: np.ndarray, scale: float, threshold: float = 0.5,
                              min_area: int = 12) -> list[np.ndarray]:
    """The outline of each connected region above ``threshold``, in the original image's pixels.

    Outlines, not bounding rectangles: two lettering regions that touch (a balloon's lines and a sound
    effect beside it) make one irregular region whose rectangle would cover the figure between them.
    Regions under ``min_area`` network pixels (a few stray pixels on a drawing) are left out.
    """
    above = (prob >= threshold).astype(np.uint8)
    contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        if cv2.contourArea(contour) < min_area:
            continue
        # the outline runs through the centres of the region's edge pixels (half a pixel inside its edge; the
        # inpainting mask grows every polygon by more than that)
        points = contour.reshape(-1, 2).astype(np.float32) + 0.5
        out.append((points / scale).astype(np.float32))
    return out


@dataclasses.dataclass
class LetteringMap:
    """LetterNet's lettering probability for one image (at the network's size) and what follows from it."""

    prob: np.ndarray
    scale: float          # network pixels per image pixel
    threshold: float = 0.5
    deny_below: float = 0.03

    def polygons(self) -> list[np.ndarray]:
        """The lettering regions as polygons in the image's pixels."""
        return polygons_from_probability(self.prob, self.scale, self.threshold)

    def mean_inside(self, polygon: np.ndarray) -> float | None:
        """Mean lettering probability inside the polygon (image pixels); None when it covers no network pixel."""
        inside = np.zeros(self.prob.shape, np.uint8)
        cv2.fillPoly(inside, [np.round(polygon * self.scale).astype(np.int32)], 1)
        values = self.prob[inside > 0]
        return float(values.mean()) if values.size else None

    def confirms(self, polygon: np.ndarray) -> bool:
        """The network reads the polygon as lettering: mean probability inside >= ``threshold``."""
        mean = self.mean_inside(polygon)
        return mean is not None and mean >= self.threshold

    def denies(self, polygon: np.ndarray) -> bool:
        """The network sees next to no lettering in the polygon: mean probability inside < ``deny_below``.

        Only for polygons at least ``MIN_DENY_PX`` network pixels across: lettering that small on a big page
        (a 2000 px scan shrunk to the network's size) is beyond what the network can see, so it abstains.
        """
        (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
        if min(x1 - x0, y1 - y0) * self.scale < MIN_DENY_PX:
            return False
        mean = self.mean_inside(polygon)
        return mean is not None and mean < self.deny_below


class LetterNetDetector:
    """Lettering maps and polygons from the bundled (or a given) LetterNet ONNX file, on the CPU."""

    name = "letternet"

    def __init__(self, model_file: str | os.PathLike = BUNDLED, threads: int | None = None, threshold: float = 0.5):
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"LetterNet model {path} not found; `fitad prep train-letternet` makes one "
                                    "(or set prep.letternet: false)")
        self._net = OnnxNet(path, threads, "LetterNet")
        self.threshold = threshold
        self.model = path.name

    def read(self, rgb: np.ndarray) -> LetteringMap:
        """The lettering probability of ``rgb`` (the image's part of the network output, padding cut)."""
        x, scale = prepare_input(rgb)
        h, w = max(round(rgb.shape[0] * scale), 1), max(round(rgb.shape[1] * scale), 1)
        return LetteringMap(logistic(self._net.logits(x)[0, 0, :h, :w]), scale, self.threshold)

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        return self.read(rgb).polygons()


# ---------------------------------------------------------------- training (torch; not used by the prep stage)

@dataclasses.dataclass
class LetterTrainSettings(NetworkTrainSettings):
    synth_panels: int = 500
    styles_panels: int = 1500
    seed: int = 60_000            # away from FigureNet's panels too
    epochs: int = 40
    batch: int = 16
    crop: int = CROP

    command: ClassVar[str] = "train-letternet"
    input_side: ClassVar[int] = INPUT_SIDE


def letter_pair(meta_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One raw panel: input, its text polygons filled (every kind), valid area."""
    meta, rgb = read_panel(meta_path)
    x, scale = prepare_input(rgb)
    h, w = round(rgb.shape[0] * scale), round(rgb.shape[1] * scale)
    target = np.zeros((h, w), np.uint8)
    for text in meta.get("texts", []):
        points = np.asarray(text["polygon"], np.float32) * scale
        cv2.fillPoly(target, [np.round(points).astype(np.int32)], 1)
    return (on_canvas(x[0, :, :h, :w], INPUT_SIDE), on_canvas(target[None], INPUT_SIDE),
            on_canvas(np.ones((1, h, w)), INPUT_SIDE))


def train(settings: LetterTrainSettings, out_file: str | os.PathLike, workdir: str | os.PathLike,
          progress: Callable[[str], None] = lambda _m: None) -> dict[str, float]:
    """Draw panels, train LetterNet on their text polygons, export it to ``out_file`` (ONNX)."""
    import fitad

    name = (f"letter-pairs-{settings.synth_panels}-{settings.styles_panels}-{settings.seed}-{INPUT_SIDE}"
            f"-v{PAIRS_VERSION}-{fitad.__version__}.npz")
    x, y, valid = cached_pairs(Path(workdir), name, settings, letter_pair, progress=progress)
    model = build_unet(3)
    stats = fit_unet(model, x, y, valid, epochs=settings.epochs, batch=settings.batch, lr=settings.lr,
                     crop=settings.crop, seed=settings.torch_seed, device=settings.device, progress=progress)
    export_onnx(model, out_file, 3, INPUT_SIDE)
    return stats
