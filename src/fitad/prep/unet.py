"""The small U-Net behind FigureNet and LetterNet: building, training on panels, ONNX export and running.

Both networks are the same shape (four levels, one logit per pixel) and differ in what they read and
learn: FigureNet reads the cleaned panel plus the removed-text mask and marks figures, LetterNet reads
the raw panel and marks lettering. Training needs torch (``fitad[train]``) and uses a GPU when there
is one; running needs only onnxruntime, so the prep workers never import torch.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

STRIDE = 16  # inputs are padded to a multiple of this (three poolings and some room)
WIDTHS = (12, 24, 32, 48)


def logistic(logits: np.ndarray) -> np.ndarray:
    """The logistic function without overflow for large negative logits."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def padded(size: int) -> int:
    return -(-size // STRIDE) * STRIDE


class OnnxNet:
    """An exported U-Net run on the CPU with onnxruntime; ``logits(x)`` for a (1, C, H, W) float32 input."""

    def __init__(self, model_file: str | os.PathLike, threads: int | None = None, what: str = "network"):
        import onnxruntime as ort

        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"{what} model {path} not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.path = path

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]


def build_unet(in_channels: int, widths: tuple[int, int, int, int] = WIDTHS):
    """The U-Net: ``in_channels`` -> widths, three poolings, skip connections, one logit per pixel."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    w1, w2, w3, w4 = widths

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1, self.e2, self.e3, self.mid = block(in_channels, w1), block(w1, w2), block(w2, w3), block(w3, w4)
            self.d3, self.d2, self.d1 = block(w4 + w3, w3), block(w3 + w2, w2), block(w2 + w1, w1)
            self.out = nn.Conv2d(w1, 1, 1)
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


@dataclasses.dataclass
class NetworkTrainSettings:
    """What training one of the prep networks takes; each network's settings set their own defaults."""

    synth_panels: int = 8         # fitad.synth panels drawn for training
    styles_panels: int = 8        # fitad.synth_styles dev panels drawn for training
    seed: int = 50_000            # first panel seed, far from the seeds evaluate and the tests score (0...)
    epochs: int = 1
    batch: int = 8
    lr: float = 2e-3
    crop: int = 160               # training windows this size (the network's input side: whole panels)
    torch_seed: int = 0
    workers: int = 1              # processes drawing (and cleaning) the panels
    device: str = "auto"          # auto: the GPU when torch sees one

    command: ClassVar[str] = "training"
    input_side: ClassVar[int] = 288

    def __post_init__(self) -> None:
        if self.synth_panels < 0 or self.styles_panels < 0 or self.synth_panels + self.styles_panels < 8:
            raise ValueError(f"{self.command} needs at least 8 panels in all (synth_panels + styles_panels), got "
                             f"{self.synth_panels} + {self.styles_panels}")
        for name, value in (("epochs", self.epochs), ("batch", self.batch), ("workers", self.workers)):
            if value < 1:
                raise ValueError(f"{self.command}: {name} must be >= 1, got {value}")
        if not 0 < self.lr < 1:
            raise ValueError(f"{self.command}: lr must be in (0, 1), got {self.lr}")
        if not STRIDE <= self.crop <= self.input_side or self.crop % STRIDE:
            raise ValueError(f"{self.command}: crop must be a multiple of {STRIDE} between {STRIDE} and "
                             f"{self.input_side}, got {self.crop}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"{self.command}: device must be one of auto, cpu, cuda, got {self.device!r}")


def training_device(requested: str = "auto") -> str:
    """``auto``: the GPU when torch sees one, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but torch sees no GPU")
    return requested


def fit_unet(model, x: np.ndarray, y: np.ndarray, valid: np.ndarray, *, epochs: int, batch: int, lr: float,
             crop: int, seed: int = 0, device: str = "auto",
             progress: Callable[[str], None] = lambda _m: None) -> dict[str, float]:
    """Train on (N, C, S, S) inputs against (N, 1, S, S) targets, counting only the ``valid`` pixels.

    Each step sees one random ``crop``-pixel window of a batch (mirrored half the time); the loss is binary
    cross-entropy plus Dice, with a one-cycle learning rate. Returns the
    last epoch's loss and pixel IoU on the training windows.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = training_device(device)
    model = model.to(device)
    side = x.shape[-1]
    crop = min(crop, side)
    # the panels go to the training device once, in float16; batches are cut from them there
    data = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float16)).to(device) for a in (x, y, valid)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-len(x) // batch))
    stats: dict[str, float] = {}
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        # summed on the device: reading a number back each step would wait for the GPU every time
        total, inter, union = (torch.zeros((), device=device) for _ in range(3))
        for start in range(0, len(x), batch):
            idx = torch.from_numpy(order[start:start + batch]).to(device)
            cy, cx = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
            xb, yb, vb = (a[idx, :, cy:cy + crop, cx:cx + crop].float() for a in data)
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
            total += loss.detach() * len(idx)
            pred = (prob.detach() > 0.5).float()
            inter += (pred * yb).sum()
            union += ((pred + yb) > 0).float().mul(vb).sum()
        stats = {"epoch": epoch + 1, "loss": round(float(total) / len(x), 4),
                 "train_iou": round(float(inter) / max(float(union), 1.0), 4)}
        progress(f"epoch {epoch + 1}/{epochs}: loss {stats['loss']}, train IoU {stats['train_iou']}")
    model.eval()
    model.to("cpu")
    return stats


def export_onnx(model, out_file: str | os.PathLike, in_channels: int, side: int) -> None:
    """Export with dynamic height and width, written atomically."""
    import torch

    from fitad.fsutil import atomic_write_bytes

    out = Path(out_file)
    tmp = out.with_name(out.name + ".export")
    dummy = torch.zeros(1, in_channels, side, side)
    try:
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {2: "h", 3: "w"}, "logits": {2: "h", 3: "w"}}, dynamo=False)
        atomic_write_bytes(out, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
