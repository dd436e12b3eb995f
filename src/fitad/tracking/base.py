"""The experiment-tracker interface and its two backends that need no server.

A training run talks to a :class:`Tracker`: ``log_params`` once, ``log_metrics`` per step,
``log_image`` for validation renders, ``log_artifact`` for files, ``close`` at the end. Which
backend stands behind it is chosen by config (:func:`make_tracker`): MLflow in real runs,
:class:`DiskTracker` (plain files) or :class:`NullTracker` in tests and quick experiments.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable
from fitad.fsutil import atomic_file, atomic_write_json

if TYPE_CHECKING:
    from PIL import Image

TRACKER_KINDS = ("mlflow", "disk", "none")


@runtime_checkable
class Tracker(Protocol):
    """What a training or evaluation run reports to."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record run settings; nested mappings are flattened to dotted keys by backends that need it."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record scalar metrics at a step."""

    def log_image(self, image: "Image.Image | str | os.PathLike", name: str, step: int | None = None,
                  key: str | None = None) -> None:
        """Record an image (a PIL image or an image file) under ``name`` (e.g. ``step_000050_0.png``).

        With ``step`` and ``key`` it is one frame of the image series ``key`` (MLflow shows how it evolves)."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Record labels of the run (decisions, lineage); values become strings."""

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Record a file or directory, optionally under a sub-folder ``artifact_path``."""

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """End the run; ``status`` is ``FINISHED`` or ``FAILED`` (then ``reason`` says why)."""


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params to ``{"a.b": "value"}`` strings; lists become comma-separated text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        else:
            flat[name] = str(value)
    return flat


def _json_number(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)  # JSON has no NaN/inf


class _Base:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("FINISHED")
        else:
            self.close("FAILED", reason=failure_reason(exc_type, exc))


def failure_reason(exc_type: type, exc: BaseException | None) -> str:
    """One line for a run's failure tag: the exception's type and message (interrupts say so)."""
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    text = " ".join(str(exc or "").split())
    return f"{exc_type.__name__}: {text}"[:4000] if text else exc_type.__name__


class NullTracker(_Base):
    """Discards everything."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_image(self, image: Any, name: str, step: int | None = None, key: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        pass


class DiskTracker(_Base):
    """Plain files under ``root``: ``params.json``, ``metrics.jsonl``, ``images/``, ``artifacts/``, ``status``."""

    def __init__(self, root: str | os.PathLike, fresh: bool = False) -> None:
        """``fresh`` clears what an earlier run left in ``root``; otherwise the run is continued there."""
        self.root = Path(root)
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_id = str(self.root)
        self._params: dict[str, str] = {}
        params_file = self.root / "params.json"
        if params_file.is_file():
            self._params = json.loads(params_file.read_text(encoding="utf-8"))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._params.update(flatten_params(params))
        atomic_write_json(self.root / "params.json", self._params, sort_keys=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        record = {"step": int(step), **{k: _json_number(v) for k, v in metrics.items()}}
        with open(self.root / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def log_image(self, image: Any, name: str, step: int | None = None, key: str | None = None) -> None:
        target = self.root / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, suffix=target.suffix or ".png") as tmp:
            if isinstance(image, (str, os.PathLike)):
                shutil.copyfile(image, tmp)
            else:
                image.save(tmp)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file goes to ``artifacts/<artifact_path>/<name>``; a directory's contents to
        ``artifacts/<artifact_path or its name>/`` (the same places MLflow uses)."""
        source = Path(path)
        if source.is_dir():
            shutil.copytree(source, self.root / "artifacts" / (artifact_path or source.name), dirs_exist_ok=True)
            return
        folder = self.root / "artifacts" / (artifact_path or "")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / source.name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        path = self.root / "tags.json"
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        current.update({str(k): str(v) for k, v in tags.items()})
        atomic_write_json(path, current, sort_keys=True)

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        (self.root / "status").write_text(status + "\n", encoding="utf-8")
        if reason:
            self.set_tags({"fitad.failure_reason": reason})

    def metrics(self) -> list[dict[str, Any]]:
        """The metric records logged so far (for tests and reports)."""
        path = self.root / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def make_tracker(kind: str, *, root: str | os.PathLike | None = None, fresh: bool = False, experiment: str = "fitad",
                 run_name: str | None = None, tracking_uri: str | None = None,
                 tags: Mapping[str, str] | None = None, parent_run_id: str | None = None) -> Tracker:
    """Build the tracker named by ``kind``: ``mlflow``, ``disk`` (needs ``root``) or ``none``."""
    if kind == "none":
        return NullTracker()
    if kind == "disk":
        if root is None:
            raise ValueError("the disk tracker needs a directory (root=...)")
        return DiskTracker(root, fresh=fresh)
    if kind == "mlflow":
        from fitad.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker(experiment=experiment, run_name=run_name, tracking_uri=tracking_uri, tags=tags,
                             parent_run_id=parent_run_id)
    raise ValueError(f"unknown tracker {kind!r}: choose one of {list(TRACKER_KINDS)}")
