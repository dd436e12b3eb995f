"""FigureNet: a small U-Net that tells drawn figures from background, shipped as ONNX (1.6 MB).

Line-art panels put figures in front of structured backgrounds (buildings, rooms, speed lines,
halftone), which region rules on outlines and colours cannot tell apart. FigureNet learns it from
synthetic panels with exact masks: ``fitad prep train-figurenet`` draws panels with both generators
(``fitad.synth`` and the ``dev`` split of ``fitad.synth_styles``, seeds away from the ones
``fitad prep evaluate`` scores), removes their text with the stage's own cleanup, and trains on the
cleaned image plus the removed-text mask, so speech balloons emptied by cleanup are learned as
background. The trained network is exported to ONNX and run with onnxruntime: the prep workers never
import torch.

Input: RGB and the text mask at ``INPUT_SIDE`` px on the longer side (padded to a multiple of 16);
output: per-pixel figure logits at that size.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, ClassVar

import cv2
import numpy as np

from fitad.prep.training_panels import cached_pairs, on_canvas, read_panel
from fitad.prep.unet import STRIDE, NetworkTrainSettings, OnnxNet, build_unet, export_onnx, fit_unet, logistic

INPUT_SIDE = 288
PAIRS_VERSION = 1  # bump when the training arrays change meaning (the cache then draws them again)
BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "models" / "figurenet.onnx"


def prepare_input(rgb: np.ndarray, text_mask: np.ndarray | None, side: int = INPUT_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """(1, 4, H, W) float32 network input and the size (w, h) of the image inside its padding."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    text = np.zeros(rgb.shape[:2], np.uint8) if text_mask is None else text_mask
    text_small = cv2.resize((text > 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    ph, pw = -(-size[1] // STRIDE) * STRIDE, -(-size[0] // STRIDE) * STRIDE
    x = np.zeros((4, ph, pw), np.float32)
    x[:3, :size[1], :size[0]] = small.transpose(2, 0, 1) * 2.0 - 1.0
    x[3, :size[1], :size[0]] = text_small
    return x[None], size


class FigureNetSegmenter:
    """Segmenter running the bundled (or a given) FigureNet ONNX file with onnxruntime on the CPU."""

    name = "figurenet"

    def __init__(self, model_file: str | os.PathLike = BUNDLED, threads: int | None = None, threshold: float = 0.5):
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"FigureNet model {path} not found; `fitad prep train-figurenet` makes one")
        self._net = OnnxNet(path, threads, "FigureNet")
        self.threshold = threshold
        self.model = path.name

    def probability(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        """Figure probability (float32, 0..1) at the resolution of ``rgb``."""
        x, (w, h) = prepare_input(rgb, text_mask)
        prob = logistic(self._net.logits(x)[0, 0, :h, :w])
        return cv2.resize(prob, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def segment(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        """The network decides, the drawing's own lines shape: see :func:`snap_to_regions`."""
        return snap_to_regions(rgb, self.probability(rgb, text_mask), self.threshold)


def snap_to_regions(rgb: np.ndarray, prob: np.ndarray, threshold: float = 0.5, sure: float = 0.9,
                    dark_level: int = 80) -> np.ndarray:
    """A figure mask whose edges follow the drawn outlines rather than the network's coarse grid.

    The picture is cut into the regions its dark lines enclose. A region with ``sure`` of its pixels on
    one side of ``threshold`` is taken whole, figure or background; any other (a figure whose outline
    leaks into the background) keeps the per-pixel decision. Dark line pixels follow the per-pixel
    decision, except the panel's frame (figures cut by it would join along it); holes inside a figure
    are filled.
    """
    from fitad.prep.segment import fill_holes, picture_frame

    dark = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < dark_level
    n, labels = cv2.connectedComponents((~dark).astype(np.uint8), connectivity=4)
    above = prob >= threshold
    share = np.bincount(labels.ravel(), weights=above.ravel(), minlength=n) / np.maximum(
        np.bincount(labels.ravel(), minlength=n), 1)
    decided = np.full(n, -1, np.int8)  # -1: per pixel
    decided[share >= sure] = 1
    decided[share <= 1 - sure] = 0
    decided[0] = -1  # label 0 is the dark lines
    region = decided[labels]
    mask = np.where(region == -1, above, region == 1).astype(np.uint8) * 255
    x0, y0, x1, y1 = picture_frame(rgb, dark_level=dark_level)
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = 255
    return fill_holes(mask & inside)


# ---------------------------------------------------------------- training (torch; not used by the prep stage)

@dataclasses.dataclass
class TrainSettings(NetworkTrainSettings):
    synth_panels: int = 1000
    styles_panels: int = 3000
    seed: int = 50_000
    epochs: int = 50
    batch: int = 24
    crop: int = INPUT_SIDE        # whole panels; smaller random windows train faster on a CPU
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)  # channels per U-Net level (the ONNX file carries them)

    command: ClassVar[str] = "train-figurenet"
    input_side: ClassVar[int] = INPUT_SIDE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) != 4 or min(self.widths) < 4:
            raise ValueError(f"widths must be four channel counts >= 4, got {self.widths}")


def build_model(widths: tuple[int, int, int, int] = (16, 32, 64, 96)):
    """FigureNet's U-Net: RGB + text mask in, one figure logit per pixel out (the bundled one has the default widths)."""
    return build_unet(4, widths)


_CLEANUP: dict = {}  # per process: the prep config and its loaded text detector


def _load_cleanup(config_fields: dict) -> None:
    from fitad.prep.config import PrepConfig
    from fitad.prep.run import load_backends

    config = PrepConfig(**config_fields)
    _CLEANUP.update(config=config, backends=load_backends(config, threads=1, needs=("text_detector",)))


def figure_pair(meta_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One panel cleaned by the stage's own text cleanup: input, exact figure mask, valid area."""
    from fitad.prep.run import clean_image

    meta, rgb = read_panel(meta_path)
    truth = cv2.imread(str(meta_path.parent / meta["subject_mask"]), cv2.IMREAD_GRAYSCALE)
    cleaned = clean_image(rgb, _CLEANUP["config"], _CLEANUP["backends"])
    x, (w, h) = prepare_input(cleaned.cleaned, cleaned.text_mask, INPUT_SIDE)
    target = cv2.resize(truth, (w, h), interpolation=cv2.INTER_AREA)[None] / 255.0
    return on_canvas(x[0], INPUT_SIDE), on_canvas(target, INPUT_SIDE), on_canvas(np.ones((1, h, w)), INPUT_SIDE)


def train(settings: TrainSettings, out_file: str | os.PathLike, workdir: str | os.PathLike,
          progress: Callable[[str], None] = lambda _m: None, config=None) -> dict[str, float]:
    """Draw panels, clean them with ``config``'s text cleanup (default: the embedded one), train FigureNet,
    export it to ``out_file`` (ONNX); returns the last epoch's loss and IoU."""
    from fitad.prep.io import sha256_bytes
    from fitad.prep.config import PrepConfig

    config = config or PrepConfig()
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    # drawn and cleaned panels are kept in the work folder: another run with the same panels and cleanup reuses them
    import fitad

    key = sha256_bytes(repr((settings.synth_panels, settings.styles_panels, settings.seed, sorted(fields.items()),
                             letternet_fingerprint(config), INPUT_SIDE, PAIRS_VERSION, fitad.__version__)).encode())[:12]
    x, y, valid = cached_pairs(Path(workdir), f"figure-pairs-{key}.npz", settings, figure_pair, _load_cleanup,
                               (fields,), progress)
    model = build_model(settings.widths)
    stats = fit_unet(model, x, y, valid, epochs=settings.epochs, batch=settings.batch, lr=settings.lr,
                     crop=settings.crop, seed=settings.torch_seed, device=settings.device, progress=progress)
    export_onnx(model, out_file, 4, INPUT_SIDE)
    return stats


def letternet_fingerprint(config) -> str:
    """Which LetterNet the cleanup runs (its file's hash), so cached training panels follow a new one."""
    from fitad.prep.io import sha256_bytes
    from fitad.prep.letternet import letternet_file

    path = letternet_file(config)
    return sha256_bytes(path.read_bytes())[:12] if path is not None and path.is_file() else "none"
