"""FigureNet: a small U-Net that tells drawn figures from background, shipped as ONNX (under 0.5 MB).

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
from typing import Callable

import cv2
import numpy as np

INPUT_SIDE = 288
CROP = 160     # training sees random crops this size (a quarter of the work of whole panels)
STRIDE = 16  # the input is padded to a multiple of this (three poolings and some room)
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
        import onnxruntime as ort

        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"FigureNet model {path} not found; `fitad prep train-figurenet` makes one")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.threshold = threshold
        self.model = path.name

    def probability(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        """Figure probability (float32, 0..1) at the resolution of ``rgb``."""
        x, (w, h) = prepare_input(rgb, text_mask)
        logits = self._session.run(None, {self._input: x})[0][0, 0, :h, :w]
        prob = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic function, without overflow
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
class TrainSettings:
    synth_panels: int = 250       # fitad.synth panels drawn for training
    styles_panels: int = 750      # fitad.synth_styles dev panels drawn for training
    seed: int = 50_000            # far from the seeds evaluate and the tests score (0...)
    epochs: int = 36
    batch: int = 8
    lr: float = 2e-3
    torch_seed: int = 0

    def __post_init__(self) -> None:
        if self.synth_panels < 0 or self.styles_panels < 0 or self.synth_panels + self.styles_panels < 8:
            raise ValueError("train-figurenet needs at least 8 panels in all (synth_panels + styles_panels)")
        if self.epochs < 1 or self.batch < 1 or not 0 < self.lr < 1:
            raise ValueError("epochs and batch must be >= 1 and lr in (0, 1)")


def build_model():
    """The U-Net: 4 -> 12 -> 24 -> 32 -> 48 channels, three poolings, skip connections, one logit per pixel."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1, self.e2, self.e3, self.mid = block(4, 12), block(12, 24), block(24, 32), block(32, 48)
            self.d3, self.d2, self.d1 = block(48 + 32, 32), block(32 + 24, 24), block(24 + 12, 12)
            self.out = nn.Conv2d(12, 1, 1)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(self.pool(a))
            c = self.e3(self.pool(b))
            m = self.mid(self.pool(c))
            c = self.d3(torch.cat([self.up(m), c], 1))
            b = self.d2(torch.cat([self.up(c), b], 1))
            a = self.d1(torch.cat([self.up(b), a], 1))
            return self.out(a)

    return UNet()


def training_pairs(settings: TrainSettings, workdir: Path,
                   progress: Callable[[str], None] = lambda _m: None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (N, 4, S, S), targets (N, 1, S, S) and valid-area masks, from panels drawn into ``workdir``."""
    from fitad.config import SynthConfig
    from fitad.prep.config import PrepConfig
    from fitad.prep.run import clean_image, load_backends
    from fitad.synth import synthesize
    from fitad.synth_styles import synthesize_styles

    folders = []
    if settings.synth_panels:
        synthesize(SynthConfig(n=settings.synth_panels, seed=settings.seed), workdir / "synth", progress=False)
        folders.append(workdir / "synth")
    if settings.styles_panels:
        synthesize_styles(workdir / "styles", settings.styles_panels, seed=settings.seed, split="dev")
        folders.append(workdir / "styles")
    config = PrepConfig()
    backends = load_backends(config, needs=("text_detector",))
    side = INPUT_SIDE
    xs, ys, valid = [], [], []
    import json

    for folder in folders:
        for meta_path in sorted(folder.glob("*.json")):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            rgb = cv2.cvtColor(cv2.imread(str(folder / meta["image"])), cv2.COLOR_BGR2RGB)
            truth = cv2.imread(str(folder / meta["subject_mask"]), cv2.IMREAD_GRAYSCALE)
            cleaned = clean_image(rgb, config, backends)
            x, (w, h) = prepare_input(cleaned.cleaned, cleaned.text_mask, side)
            canvas = np.zeros((1, side, side), np.float32)
            target, area = canvas.copy(), canvas.copy()
            target[0, :h, :w] = cv2.resize(truth, (w, h), interpolation=cv2.INTER_AREA) / 255.0
            area[0, :h, :w] = 1.0
            full = np.zeros((4, side, side), np.float32)
            full[:, :x.shape[2], :x.shape[3]] = x[0]
            xs.append(full.astype(np.float16))
            ys.append(target.astype(np.float16))
            valid.append(area.astype(np.float16))
        progress(f"{folder.name}: {len(xs)} training panels")
    return np.stack(xs), np.stack(ys), np.stack(valid)


def train(settings: TrainSettings, out_file: str | os.PathLike, workdir: str | os.PathLike,
          progress: Callable[[str], None] = lambda _m: None) -> dict[str, float]:
    """Draw panels, train FigureNet, export it to ``out_file`` (ONNX); returns the last epoch's loss and IoU."""
    import torch

    torch.manual_seed(settings.torch_seed)
    rng = np.random.default_rng(settings.torch_seed)
    # the drawn and cleaned panels are kept in the work folder: another run with the same panels skips drawing
    cache = Path(workdir) / f"pairs-{settings.synth_panels}-{settings.styles_panels}-{settings.seed}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            x, y, valid = saved["x"], saved["y"], saved["valid"]
        progress(f"{len(x)} training panels from {cache}")
    else:
        x, y, valid = training_pairs(settings, Path(workdir), progress)
        np.savez(cache, x=x, y=y, valid=valid)
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    steps = settings.epochs * -(-len(x) // settings.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps)
    stats: dict[str, float] = {}
    for epoch in range(settings.epochs):
        model.train()
        order = rng.permutation(len(x))
        total, inter, union = 0.0, 0.0, 0.0
        for start in range(0, len(x), settings.batch):
            idx = order[start:start + settings.batch]
            cy, cx = (int(v) for v in rng.integers(0, INPUT_SIDE - CROP + 1, size=2))
            xb, yb, vb = (torch.from_numpy(a[idx, :, cy:cy + CROP, cx:cx + CROP].astype(np.float32))
                          for a in (x, y, valid))
            if rng.random() < 0.5:  # mirrored panels are panels too
                xb, yb, vb = xb.flip(3), yb.flip(3), vb.flip(3)
            logits = model(xb)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, weight=vb)
            prob = torch.sigmoid(logits) * vb
            dice = 1 - (2 * (prob * yb).sum() + 1) / (prob.sum() + yb.sum() + 1)
            loss = bce + dice
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            pred = (prob.detach() > 0.5).float()
            inter += float((pred * yb).sum())
            union += float(((pred + yb) > 0).float().mul(vb).sum())
        stats = {"epoch": epoch + 1, "loss": round(total / len(x), 4), "train_iou": round(inter / max(union, 1), 4)}
        progress(f"epoch {epoch + 1}/{settings.epochs}: loss {stats['loss']}, train IoU {stats['train_iou']}")
    model.eval()
    export_onnx(model, out_file)
    return stats


def export_onnx(model, out_file: str | os.PathLike) -> None:
    """Export with dynamic height and width, written atomically."""
    import torch

    from fitad.fsutil import atomic_write_bytes

    out = Path(out_file)
    tmp = out.with_name(out.name + ".export")
    dummy = torch.zeros(1, 4, INPUT_SIDE, INPUT_SIDE)
    torch.onnx.export(model, (dummy,), str(tmp), input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"image": {2: "h", 3: "w"}, "logits": {2: "h", 3: "w"}}, dynamo=False)
    atomic_write_bytes(out, tmp.read_bytes())
    tmp.unlink()
