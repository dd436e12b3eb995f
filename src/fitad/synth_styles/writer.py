"""Writing a set of styled panels: PNG picture, JSON ground truth and per-character mask PNGs.

Layout for panel i (i = 0, 1, ...)::

    panel_NNNN.png, panel_NNNN.json, masks/panel_NNNN_charK.png, masks/panel_NNNN_subject.png

Every file is written atomically (temporary name, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from fitad.fsutil import atomic_write_bytes, atomic_write_text
from fitad.synth_styles.fonts import check_split
from fitad.synth_styles.panel import StyledPanel, render_panel

HOLDOUT_SEED_OFFSET = 1_000_003  # holdout seeds start here: a range no dev seed below it reaches


def panel_seed(seed: int, index: int, split: str) -> int:
    """The seed of panel ``index`` of a set made with base ``seed``."""
    return (HOLDOUT_SEED_OFFSET if split == "holdout" else 0) + seed + index


def _png(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def write_panel(panel: StyledPanel, out_dir: Path, stem: str) -> Path:
    """Write one panel's files under ``out_dir``; returns the PNG path."""
    image_name, subject_name = f"{stem}.png", f"masks/{stem}_subject.png"
    characters = []
    for k, (entry, mask) in enumerate(zip(panel.meta["characters"], panel.character_masks)):
        mask_name = f"masks/{stem}_char{k}.png"
        atomic_write_bytes(out_dir / mask_name, _png(mask, "L"))
        characters.append({**entry, "mask": mask_name})
    atomic_write_bytes(out_dir / subject_name, _png(panel.subject_mask, "L"))
    meta = {**panel.meta, "image": image_name, "subject_mask": subject_name, "characters": characters}
    text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(out_dir / f"{stem}.json", text)
    return atomic_write_bytes(out_dir / image_name, _png(panel.image, "RGB"))


def synthesize_styles(out_dir: str | os.PathLike, n: int, seed: int = 0, split: str = "dev",
                      progress: bool = False) -> list[Path]:
    """Draw ``n`` styled panels into ``out_dir``; returns the PNG paths in panel order.

    Panel i has seed ``seed + i`` in the dev split and ``1_000_003 + seed + i`` in the holdout
    split, which also letters with fonts the dev split never uses. Same arguments, same bytes.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    check_split(split)
    from tqdm.auto import tqdm

    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    paths = []
    for index in tqdm(range(int(n)), desc=f"synth-styles {split}", unit="panel", disable=not progress):
        panel = render_panel(panel_seed(int(seed), index, split), split)
        paths.append(write_panel(panel, out, f"panel_{index:04d}"))
    return paths
