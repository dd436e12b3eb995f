"""Training checkpoints: trainable weights, optimizer, LR scheduler, RNG states and step, saved atomically.

Layout of one checkpoint, ``OUT_DIR/checkpoints/step_000050/``::

    adapter.safetensors   trainable tensors, keys "<model>/<parameter name>" (e.g. "unet/...lora_A.weight")
    optimizer.pt          optimizer.state_dict()
    lr_scheduler.pt       lr_scheduler.state_dict()
    rng.pt                per process: the training noise generator and the global torch/python/numpy
                          RNG states ({"per_process": [...]}); with fp16 also the loss scaler state
    state.json            {"step": 50, ...extra}; written last, so its presence marks a complete checkpoint

A checkpoint is written into a hidden temp directory beside its final place and renamed into place,
so a crash mid-write never leaves a half checkpoint that :func:`latest_checkpoint` would pick. The
hidden directories such a crash leaves (``.step_000050.<random>``, and ``.step_000050.old.<random>``
of a re-save) are removed by :func:`prune_stale_temp`, which every save and every resume runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from fitad.fsutil import atomic_dir

_NAME = re.compile(r"^step_(\d{6,})$")
# fitad.fsutil.atomic_dir's temp dirs: ".<name>.<random>" (the new checkpoint being written) and
# ".<name>.old.<random>" (the replaced one, moved aside until the new one is in place).
_TEMP = re.compile(r"^\.(step_\d{6,})\.(old\.)?[^/]+$")
STATE_FILE = "state.json"


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint; ``trainable`` maps model name → {parameter name: tensor}."""

    path: Path
    step: int
    trainable: dict[str, dict[str, torch.Tensor]]
    optimizer: dict[str, Any]
    lr_scheduler: dict[str, Any]
    rng: dict[str, Any]
    extra: dict[str, Any]


# ---------------------------------------------------------------- RNG state

def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a training step may draw from, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- save / find / load

def save_checkpoint(root: str | Path, step: int, trainable: Mapping[str, Mapping[str, torch.Tensor]],
                    optimizer_state: Mapping[str, Any], scheduler_state: Mapping[str, Any],
                    rng_state: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                    keep: int | None = None) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep only the newest ``keep`` ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    with atomic_dir(final) as tmp:  # a re-run over the same step replaces it whole
        tensors = {f"{model}/{name}": t.detach().to("cpu").contiguous()
                   for model, params in trainable.items() for name, t in params.items()}
        save_file(tensors, str(tmp / "adapter.safetensors"))
        torch.save(dict(optimizer_state), tmp / "optimizer.pt")
        torch.save(dict(scheduler_state), tmp / "lr_scheduler.pt")
        torch.save(dict(rng_state), tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **(extra or {})}, indent=2), encoding="utf-8")
    if keep is not None:
        prune_checkpoints(root, keep)
    return final


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step number, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_stale_temp(root: str | Path) -> list[Path]:
    """Remove the temp dirs a crash mid-write left under ``root``; returns what was removed.

    Only one process writes checkpoints, and it calls this between writes, so no temp dir is in use.
    A crash between the two renames of a re-save leaves the complete old copy only in its
    ``.old.`` dir with no checkpoint under the final name: that copy is moved back first.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for child in sorted(root.iterdir()):
        match = _TEMP.match(child.name)
        if not match or not child.is_dir():
            continue
        name, is_old = match.group(1), bool(match.group(2))
        stranded = child / name
        if is_old and (stranded / STATE_FILE).is_file() and not (root / name).exists():
            os.replace(stranded, root / name)
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and stale temp dirs (:func:`prune_stale_temp`)."""
    prune_stale_temp(root)
    for _, path in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    extra = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    step = int(extra.pop("step"))
    trainable: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path / "adapter.safetensors")).items():
        model, name = key.split("/", 1)
        trainable.setdefault(model, {})[name] = tensor
    return Checkpoint(
        path=path, step=step, trainable=trainable,
        optimizer=torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        lr_scheduler=torch.load(path / "lr_scheduler.pt", map_location="cpu", weights_only=True),
        rng=torch.load(path / "rng.pt", map_location="cpu", weights_only=True),
        extra=extra)
