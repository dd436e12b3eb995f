"""One MLflow parent run per pipeline run, with a nested run per stage, whichever door runs the stages.

A stage opened with :func:`open_stage_run` writes ``mlflow_run.json`` into its output folder (tracking URI,
its run id, the parent's). The next stage finds that file in its input folder and nests its own run under
the same parent, so DVC (one process per stage), the CLI and Kubeflow all build the same tree; the first
stage of a pipeline (nothing upstream) opens the parent. ``$FITAD_PARENT_RUN_ID`` names the parent
explicitly (a Kubeflow run, the demo). When a stage ends, the parent takes its status: FAILED with the
stage's reason if it failed, FINISHED otherwise; a re-run of the failed stage nests under the same parent
and sets it back to FINISHED.

Runs are tagged with the git commit (``mlflow.source.git.commit``, as MLflow's UI expects), whether the
tree was dirty, and the DVC-compatible md5 of the stage's input data (:func:`data_md5`, the value
``dvc.lock`` records for a folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from fitad.fsutil import atomic_write_json
from fitad.tracking.base import Tracker, make_tracker
from fitad.tracking.store import default_tracking_uri

RUN_FILE = "mlflow_run.json"
PARENT_ENV = "FITAD_PARENT_RUN_ID"
_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def data_md5(path: str | os.PathLike) -> str:
    """The md5 DVC 3 records for ``path``: the file's md5, or for a folder the md5 of the sorted JSON list of
    ``{"md5", "relpath"}`` of its files with ``.dir`` appended."""
    root = Path(path)
    if root.is_file():
        return file_md5(root)
    entries = [{"md5": file_md5(f), "relpath": f.relative_to(root).as_posix()}
               for f in sorted(root.rglob("*")) if f.is_file()]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def git_tags(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """``mlflow.source.git.commit`` and ``fitad.git_dirty`` of the working tree, when it is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"mlflow.source.git.commit": commit, "fitad.git_dirty": str(bool(dirty)).lower()}


def read_run_file(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_parent(inputs: Iterable[str | os.PathLike], tracking_uri: str) -> str | None:
    """The pipeline run to nest under: ``$FITAD_PARENT_RUN_ID``, else the parent recorded by an upstream stage
    of the same tracking store."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    for item in inputs:
        folder = Path(item)
        for candidate in (folder, folder.parent):
            record = read_run_file(candidate)
            if record and record.get("tracking_uri") == tracking_uri and record.get("parent_run_id"):
                return str(record["parent_run_id"])
    return None


def open_pipeline_run(experiment: str, tracking_uri: str | None = None, run_name: str | None = None,
                      tags: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> str:
    """Create a parent (pipeline) run and return its id; it stays RUNNING until a stage ends."""
    from fitad.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(experiment=experiment, tracking_uri=tracking_uri, timeout_s=timeout_s,
                            run_name=run_name or time.strftime("pipeline-%Y%m%d-%H%M%S"),
                            tags={"fitad.pipeline": "true", **git_tags(), **(tags or {})})
    return tracker.run_id


class _StageRun:
    """Closes the stage's MLflow run, then gives the parent the stage's status."""

    def __init__(self, tracker: Any, parent_run_id: str) -> None:
        self._tracker = tracker
        self.parent_run_id = parent_run_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._tracker.__exit__(exc_type, exc, tb)
        self._finish_parent("FAILED" if exc_type else "FINISHED", None)

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        self._tracker.close(status, reason)
        self._finish_parent(status, reason)

    def _finish_parent(self, status: str, reason: str | None) -> None:
        client = self._tracker.client
        if status == "FAILED":
            failure = reason or client.get_run(self._tracker.run_id).data.tags.get("fitad.failure_reason", "")
            stage = client.get_run(self._tracker.run_id).data.tags.get("fitad.stage", "a stage")
            client.set_tag(self.parent_run_id, "fitad.failure_reason", f"{stage}: {failure}"[:5000])
        client.set_terminated(self.parent_run_id, status=status)


def open_stage_run(kind: str, stage: str, out_dir: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                   experiment: str = "fitad", run_name: str | None = None, tags: Mapping[str, Any] | None = None,
                   tracking_uri: str | None = None, fresh: bool = True, timeout_s: float = 10.0) -> Tracker:
    """The tracker of one stage: for ``mlflow`` a run nested under the pipeline run (found or opened), tagged
    with the git commit and the md5 of each input; ``disk``/``none`` as :func:`make_tracker` builds them."""
    out = Path(out_dir)
    if kind != "mlflow":
        return make_tracker(kind, root=out / "tracking", fresh=fresh)
    from fitad.tracking.mlflow_tracker import MlflowTracker

    uri = tracking_uri or default_tracking_uri()
    inputs = [Path(p) for p in inputs]
    parent = find_parent(inputs, uri)
    if parent is None:
        parent_tags = {"fitad.data_md5": data_md5(inputs[0])} if inputs and inputs[0].exists() else {}
        parent = open_pipeline_run(experiment, uri, tags=parent_tags, timeout_s=timeout_s)
    stage_tags = {"fitad.stage": stage, **git_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
    for i, item in enumerate(p for p in inputs if p.exists()):
        stage_tags["fitad.data_md5" if i == 0 else f"fitad.input{i}_md5"] = data_md5(item)
        stage_tags["fitad.data_path" if i == 0 else f"fitad.input{i}_path"] = str(item)
    tracker = MlflowTracker(experiment=experiment, run_name=run_name or stage, tracking_uri=uri, tags=stage_tags,
                            parent_run_id=parent, timeout_s=timeout_s)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_FILE, {"tracking_uri": uri, "experiment_id": tracker.experiment_id,
                                       "run_id": tracker.run_id, "parent_run_id": parent, "stage": stage})
    return _StageRun(tracker, parent)  # type: ignore[return-value]
