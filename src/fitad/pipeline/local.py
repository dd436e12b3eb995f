"""Reading back a local (kfp.local) run of the pipeline: where its steps' artifacts are and what they did.

kfp.local writes ``<root>/<pipeline name>-<timestamp>/<task>/<output>``; a step that failed leaves the folders
of the steps before it, which a re-run with the cache reuses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from fitad.pipeline import PIPELINE_NAME

STEPS = ("fetch-data", "clean-text", "crop-subjects", "caption-dataset", "train-lora", "export-lora",
         "evaluate-lora", "register-model")


def latest_run_dir(root: str | os.PathLike, after: float = 0.0) -> Path | None:
    """The newest run folder under ``root`` (created after ``after``, a time.time() value), or None."""
    folders = [p for p in Path(root).glob(f"{PIPELINE_NAME}-*") if p.is_dir() and p.stat().st_mtime >= after]
    return max(folders, key=lambda p: p.stat().st_mtime) if folders else None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summarize_run(run_dir: str | os.PathLike, cached: Iterable[str] = ()) -> dict[str, Any]:
    """Per step: ran (its outputs are in this run's folder), cached (an earlier run's outputs were reused) or not
    run; the registration and the MLflow pipeline run."""
    run = Path(run_dir)
    cached = set(cached)
    steps = {step: "cached" if step in cached else "ran" if (run / step).is_dir() and any((run / step).iterdir())
             else "not run" for step in STEPS}
    summary: dict[str, Any] = {"run_dir": str(run), "steps": steps}
    registration = _json(run / "register-model" / "registration" / "registration.json")
    if registration:
        gate = registration.get("gate") or {}
        summary["registration"] = {**{k: registration.get(k) for k in ("name", "version", "model_uri", "approved",
                                                                       "aliases")},
                                   "gate": gate.get("decision"), "gate_reasons": gate.get("reasons", [])}
    for step, folder in (("evaluate-lora", "evaluation"), ("train-lora", "model"), ("caption-dataset", "dataset"),
                         ("fetch-data", "raw")):
        record = _json(run / step / folder / "mlflow_run.json")
        if record:
            summary["mlflow"] = {"tracking_uri": record.get("tracking_uri"),
                                 "pipeline_run_id": record.get("parent_run_id")}
            break
    else:  # every step before register came from the cache: its training run names the pipeline run
        if registration and registration.get("run_id") and registration.get("tracking_uri"):
            summary["mlflow"] = {"tracking_uri": registration["tracking_uri"],
                                 "pipeline_run_id": _parent_of(registration["tracking_uri"], registration["run_id"])}
    return summary


def _parent_of(tracking_uri: str, run_id: str) -> str | None:
    try:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri).get_run(run_id).data.tags.get("mlflow.parentRunId")
    except Exception:  # noqa: BLE001 - a summary line, not worth failing the command for
        return None
