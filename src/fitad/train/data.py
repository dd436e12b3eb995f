"""The training dataset: discovery, validation, resize/bucket rules and a resumable batch order.

Layout (written by the prep stage): ``DATASET_DIR/images/<stem>.png`` with a kohya-style caption
``DATASET_DIR/images/<stem>.txt`` and/or ``DATASET_DIR/metadata.jsonl`` lines
``{"file_name": "images/<stem>.png", "text": "..."}``. When ``metadata.jsonl`` exists it lists the
images and its ``text`` wins; a missing or empty text falls back to the ``.txt`` file.

:func:`load_dataset` reads only file headers and captions, so every problem (empty dataset, image
without caption, unreadable or too-small image, a path that leaves the dataset directory) is
reported, all at once, before a model is loaded. Paths from ``metadata.jsonl``, and symlinked
images or captions, must stay inside the dataset directory.

Pixels are decoded by :func:`fitad.images.load_image`, the loader the prep stage uses: EXIF
orientation applied, 16-bit data scaled, transparency (alpha, palette, colour key) composited on
white, so training sees exactly what prep saw. Sizes are the displayed sizes (after EXIF rotation).

Resize rule: each image is scaled (Lanczos) so it covers its target size, then center-cropped.
The target is ``resolution × resolution``, or with ``aspect_buckets`` the bucket of about
``resolution²`` pixels (sides multiples of 64) closest to the image's aspect ratio. Upscaling is
refused unless ``allow_upscale`` is set: a blurry upscaled image teaches the LoRA blur.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from fitad.images import ImageLoadError, image_size
from fitad.images import load_image as decode_image
from fitad.paths import path_problem

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
BUCKET_STEP = 64
# Largest training image accepted, in pixels: Pillow's own decompression-bomb limit, which the
# training loader has always applied (prep caps its outputs far below it).
MAX_PIXELS = 2 * 89_478_485


UNFINISHED_MARK = "manifest.incomplete.json"  # fitad.prep.stages.INCOMPLETE: not imported (prep pulls in OpenCV)


class DatasetError(ValueError):
    """The training dataset cannot be used; the message names the directory or files and the problem."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One training image with its caption; ``size`` is (width, height) in pixels."""

    image_path: Path
    caption: str
    size: tuple[int, int]


@dataclasses.dataclass
class TrainDataset:
    """Validated examples plus what the run records about them."""

    root: Path
    examples: list[Example]
    sha256: str
    trigger: str | None
    targets: list[tuple[int, int]]  # (width, height) each example is resized/cropped to

    def __len__(self) -> int:
        return len(self.examples)


# ---------------------------------------------------------------- discovery and validation

def _read_caption_file(root: Path, image_path: Path, problems: list[str]) -> str:
    txt = image_path.with_suffix(".txt")
    if not txt.is_file():
        return ""
    problem = path_problem(root, str(txt.relative_to(root)))
    if problem:
        problems.append(f"{txt}: caption file {problem}")
        return ""
    return txt.read_text(encoding="utf-8").strip()


def _from_metadata(root: Path, metadata: Path, problems: list[str]) -> list[tuple[Path, str]]:
    items: list[tuple[Path, str]] = []
    for lineno, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            file_name = record["file_name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.append(f"{metadata}:{lineno}: not a JSON object with a 'file_name' key")
            continue
        problem = path_problem(root, file_name)
        if problem:
            problems.append(f"{metadata}:{lineno}: file_name {problem}")
            continue
        path = root / file_name
        if not path.is_file():
            problems.append(f"{metadata}:{lineno}: image {file_name!r} does not exist")
            continue
        text = str(record.get("text") or "").strip()
        items.append((path, text or _read_caption_file(root, path, problems)))
    return items


def _from_folder(root: Path, problems: list[str]) -> list[tuple[Path, str]]:
    folder = root / "images" if (root / "images").is_dir() else root
    items: list[tuple[Path, str]] = []
    for p in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        problem = path_problem(root, str(p.relative_to(root)))
        if problem:
            problems.append(f"{p}: image {problem}")
            continue
        items.append((p, _read_caption_file(root, p, problems)))
    return items


def _read_trigger(root: Path) -> str | None:
    report = root / "report.json"
    if not report.is_file():
        return None
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    # The prep stage records its settings, the trigger word among them, under "config".
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    trigger = data.get("trigger") or config.get("trigger")
    return str(trigger) if trigger else None


def load_dataset(dataset_dir: str | Path, resolution: int, *, aspect_buckets: bool = False,
                 allow_upscale: bool = False) -> TrainDataset:
    """Discover and validate the dataset; raise :class:`DatasetError` listing every problem found."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} does not exist")
    # the caption stage removes report.json when it starts and marks the folder until it ends (fitad.prep.stages)
    if (root / UNFINISHED_MARK).is_file() and not (root / "report.json").is_file():
        raise DatasetError(f"dataset {str(root)!r} is incomplete: the prep run writing it did not finish "
                           f"({UNFINISHED_MARK} is there); run that stage again")
    problems: list[str] = []
    metadata = root / "metadata.jsonl"
    items = _from_metadata(root, metadata, problems) if metadata.is_file() else _from_folder(root, problems)
    if not items and not problems:
        raise DatasetError(f"dataset {str(root)!r} is empty: no {'/'.join(IMAGE_SUFFIXES)} images under "
                           f"{str(root / 'images')!r} and no metadata.jsonl")
    buckets = make_buckets(resolution) if aspect_buckets else [(resolution, resolution)]
    examples: list[Example] = []
    targets: list[tuple[int, int]] = []
    for path, caption in items:
        try:
            size = image_size(path)
        except (OSError, ImageLoadError) as exc:
            problems.append(f"{path}: not a readable image ({exc})")
            continue
        if size[0] * size[1] > MAX_PIXELS:
            problems.append(f"{path}: {size[0]}x{size[1]} px is above the {MAX_PIXELS:,} pixels a training "
                            f"image may have (scale it down, e.g. with fitad prep)")
            continue
        if not caption:
            problems.append(f"{path}: no caption (expected {path.with_suffix('.txt').name} or a 'text' "
                            f"entry in metadata.jsonl)")
            continue
        target = nearest_bucket(size, buckets)
        if not allow_upscale and cover_scale(size, target) > 1.0:
            problems.append(f"{path}: {size[0]}x{size[1]} px is smaller than the training size "
                            f"{target[0]}x{target[1]} (lower resolution or set allow_upscale)")
            continue
        examples.append(Example(path, caption, size))
        targets.append(target)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"dataset {str(root)!r} has {len(problems)} problem(s):\n  {shown}{more}")
    return TrainDataset(root=root, examples=examples, sha256=dataset_hash(root, examples),
                        trigger=_read_trigger(root), targets=targets)


def dataset_hash(root: Path, examples: Sequence[Example]) -> str:
    """SHA-256 over each example's relative path, image bytes and caption, in a fixed order."""
    h = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: str(e.image_path)):
        rel = ex.image_path.relative_to(root) if ex.image_path.is_relative_to(root) else ex.image_path
        h.update(str(rel).encode())
        h.update(hashlib.sha256(ex.image_path.read_bytes()).digest())
        h.update(ex.caption.encode("utf-8"))
    return h.hexdigest()


# ---------------------------------------------------------------- size rules

def make_buckets(resolution: int, step: int = BUCKET_STEP, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) buckets of at most ``resolution²`` pixels, sides multiples of ``step``.

    Side ratios stay within ``max_ratio``; the square bucket is always included.
    """
    step = min(step, resolution)
    area = resolution * resolution
    buckets = {(resolution, resolution)}
    width = step
    while width <= resolution * max_ratio:
        height = (area // width) // step * step
        if height >= step and max(width / height, height / width) <= max_ratio:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    return sorted(buckets)


def nearest_bucket(size: tuple[int, int], buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space) to the image's; ties go to larger area."""
    ratio = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def cover_scale(size: tuple[int, int], target: tuple[int, int]) -> float:
    """Scale factor that makes an image of ``size`` cover ``target`` (> 1 means upscaling)."""
    return max(target[0] / size[0], target[1] / size[1])


def load_image(path: Path, target: tuple[int, int], flip: bool = False) -> Image.Image:
    """Decode with the project's loader (:func:`fitad.images.load_image`: EXIF orientation, 16-bit,
    transparency on white), scale to cover ``target`` and center-crop to it.

    Raises DatasetError naming the file when it cannot be decoded.
    """
    path = Path(path)
    try:
        loaded = decode_image(path.read_bytes(), path.name, max_pixels=MAX_PIXELS, min_side=1, section="train")
    except (OSError, ImageLoadError) as exc:
        raise DatasetError(f"{path}: cannot load the training image: {exc}") from None
    img = Image.fromarray(loaded.rgb)
    scale = cover_scale(img.size, target)
    new_size = (max(target[0], round(img.width * scale)), max(target[1], round(img.height * scale)))
    if new_size != img.size:
        img = img.resize(new_size, Image.Resampling.LANCZOS)
    left = (img.width - target[0]) // 2
    top = (img.height - target[1]) // 2
    img = img.crop((left, top, left + target[0], top + target[1]))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img


def image_to_tensor(img: Image.Image) -> "torch.Tensor":
    """PIL RGB image → float tensor (3, H, W) in [-1, 1], the VAE's input range."""
    import numpy as np
    import torch

    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- batch order

class BatchOrder:
    """Deterministic, resumable order of micro-batches.

    Each epoch shuffles the examples of every bucket with a RNG seeded by ``(seed, epoch)``, cuts them
    into batches of one bucket each, and shuffles the batches. Micro-batch ``m`` of process ``rank``
    is global batch ``m * world_size + rank`` of the endless sequence of epochs, so the order depends
    only on the step number: resuming needs no sampler state.
    """

    def __init__(self, targets: Sequence[tuple[int, int]], batch_size: int, seed: int,
                 world_size: int = 1, rank: int = 0) -> None:
        if not targets:
            raise ValueError("BatchOrder needs at least one example")
        self.targets = list(targets)
        self.batch_size = batch_size
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self._epoch_cache: dict[int, list[list[int]]] = {}
        self.batches_per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_cache:
            rng = random.Random(f"{self.seed}:{epoch}")
            by_bucket: dict[tuple[int, int], list[int]] = {}
            for index, target in enumerate(self.targets):
                by_bucket.setdefault(target, []).append(index)
            batches: list[list[int]] = []
            for target in sorted(by_bucket):
                indices = by_bucket[target]
                rng.shuffle(indices)
                batches += [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
            rng.shuffle(batches)
            self._epoch_cache = {epoch: batches}  # keep one epoch: the order is consumed sequentially
        return self._epoch_cache[epoch]

    def batch(self, micro_step: int) -> list[int]:
        """Example indices of this process's micro-batch number ``micro_step`` (0-based)."""
        global_index = micro_step * self.world_size + self.rank
        epoch, position = divmod(global_index, self.batches_per_epoch)
        return self._epoch(epoch)[position]

    def epoch_of(self, micro_step: int) -> int:
        return (micro_step * self.world_size + self.rank) // self.batches_per_epoch
