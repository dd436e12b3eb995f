"""Synthetic training panels for the prep networks: drawn with both generators, turned into arrays in parallel.

Panels come from ``fitad.synth`` and the ``dev`` split of ``fitad.synth_styles`` (never the holdout
split), from seeds far from the ones ``fitad prep evaluate`` and the tests score. Each generator
makes panel ``i`` from ``seed + i`` alone, so drawing in chunks on several processes gives the same
panels as drawing them in one go.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

Pair = tuple[np.ndarray, np.ndarray, np.ndarray]  # input (C, S, S), target (1, S, S), valid area (1, S, S)


def _draw_chunk(generator: str, folder: str, n: int, seed: int) -> str:
    if generator == "synth":
        from fitad.config import SynthConfig
        from fitad.synth import synthesize

        synthesize(SynthConfig(n=n, seed=seed), folder, progress=False)
    else:
        from fitad.synth_styles import synthesize_styles

        synthesize_styles(folder, n, seed=seed, split="dev")
    return folder


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """(offset, count) pieces of ``range(n)``."""
    size = -(-n // max(parts, 1))
    return [(start, min(size, n - start)) for start in range(0, n, size)] if n else []


def draw_panels(workdir: Path, synth_panels: int, styles_panels: int, seed: int, workers: int = 1) -> list[Path]:
    """Draw the panels into ``workdir/{synth,styles}-N-SEED/partNN`` and return their JSON files, in seed order.

    A folder left by an earlier run with the same counts and seed is drawn again from scratch, so an
    interrupted run leaves nothing behind that a later one would take for its own panels.
    """
    jobs = []
    for generator, n in (("synth", synth_panels), ("styles", styles_panels)):
        folder = workdir / f"{generator}-{n}-{seed}"
        if folder.exists():
            shutil.rmtree(folder)
        for part, (offset, count) in enumerate(_chunks(n, workers * 2)):
            jobs.append((generator, str(folder / f"part{part:02d}"), count, seed + offset))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            folders = list(pool.map(_draw_chunk, *zip(*jobs)))
    else:
        folders = [_draw_chunk(*job) for job in jobs]
    return [path for folder in folders for path in sorted(Path(folder).glob("*.json"))]


def read_panel(meta_path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The panel's JSON and its RGB image."""
    import cv2

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    bgr = cv2.imread(str(meta_path.parent / meta["image"]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{meta_path.parent / meta['image']}: not a readable image")
    return meta, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def on_canvas(array: np.ndarray, side: int) -> np.ndarray:
    """A (C, h, w) array in the top-left corner of a zeroed (C, side, side) float16 canvas."""
    canvas = np.zeros((array.shape[0], side, side), np.float16)
    canvas[:, :array.shape[1], :array.shape[2]] = array
    return canvas


def build_pairs(paths: Iterable[Path], make_pair: Callable[[Path], Pair], workers: int = 1,
                initializer: Callable[..., None] | None = None, initargs: tuple = (),
                progress: Callable[[str], None] = lambda _m: None) -> Pair:
    """``make_pair`` on every panel (in ``workers`` processes), stacked: inputs, targets, valid areas."""
    paths = list(paths)
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=initializer, initargs=initargs) as pool:
            pairs = list(pool.map(make_pair, paths, chunksize=8))
    else:
        if initializer is not None:
            initializer(*initargs)
        pairs = [make_pair(path) for path in paths]
    progress(f"{len(pairs)} training panels")
    return tuple(np.stack(part) for part in zip(*pairs))  # type: ignore[return-value]


def save_pairs(path: Path, pairs: Pair) -> None:
    """Write the training arrays atomically (an interrupted run leaves no half-written cache)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial.npz")  # two runs in one folder do not collide
    x, y, valid = pairs
    np.savez(tmp, x=x, y=y, valid=valid)
    tmp.replace(path)


def load_pairs(path: Path) -> Pair:
    with np.load(path) as saved:
        return saved["x"], saved["y"], saved["valid"]


def cached_pairs(workdir: Path, cache_name: str, settings: Any, make_pair: Callable[[Path], Pair],
                 initializer: Callable[..., None] | None = None, initargs: tuple = (),
                 progress: Callable[[str], None] = lambda _m: None) -> Pair:
    """The training arrays of ``settings`` (panel counts, seed): from ``workdir/cache_name`` when an earlier run
    left them there (the name must say everything the arrays depend on), else drawn in ``settings.workers``
    processes, turned into arrays by ``make_pair`` and kept there."""
    cache = Path(workdir) / cache_name
    if cache.is_file():
        pairs = load_pairs(cache)
        progress(f"{len(pairs[0])} training panels from {cache}")
        return pairs
    paths = draw_panels(Path(workdir), settings.synth_panels, settings.styles_panels, settings.seed, settings.workers)
    progress(f"drew {len(paths)} panels (synth and styles)")
    pairs = build_pairs(paths, make_pair, settings.workers, initializer, initargs, progress)
    save_pairs(cache, pairs)
    return pairs
