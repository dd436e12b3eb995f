"""The images an evaluation reads and writes: training references in, renders and the comparison grid out."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fitad.evaluate.errors import EvalError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")   # what the training stage reads


def reference_paths(dataset_dir: str | Path, limit: int) -> list[Path]:
    """The first ``limit`` training images (sorted names) of a prepared dataset: ``DATASET_DIR/images/*``.

    A folder without an ``images/`` sub-folder is read itself, as training does.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise EvalError(f"dataset directory {str(root)!r} does not exist")
    folder = root / "images" if (root / "images").is_dir() else root
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise EvalError(f"no training images in {str(folder)!r}: expected {'/'.join(IMAGE_SUFFIXES)} files "
                        f"as `fitad prep` writes them under DATASET_DIR/images")
    return paths[:limit]


def load_references(paths: Sequence[Path]) -> list[np.ndarray]:
    """Decode the reference images with the project's image loader (RGB uint8, EXIF and alpha handled)."""
    from fitad.images import ImageLoadError, load_image

    images = []
    for path in paths:
        try:
            images.append(load_image(path.read_bytes(), path.name, min_side=1).rgb)
        except (OSError, ImageLoadError) as exc:
            raise EvalError(f"{path}: not a readable training image ({exc})") from None
    return images


def comparison_grid(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """One row per (base, LoRA) pair, base on the left: ``2 W`` x ``N H`` pixels, no labels."""
    return np.concatenate([np.concatenate([base, lora], axis=1) for base, lora in pairs], axis=0)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write an RGB uint8 array as PNG, atomically."""
    from PIL import Image

    from fitad.fsutil import atomic_file

    with atomic_file(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
