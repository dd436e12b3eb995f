"""One MLflow parent run per pipeline run, with a nested run per stage, whichever door runs the stages.

A stage opened with :func:`open_stage_run` writes ``mlflow_run.json`` into its output folder (tracking URI, its
run id, the parent's). The next stage finds that record in its input folders and nests its own run under the
same parent while that pipeline run is still open (RUNNING, or FAILED and being re-run); when the parent has
FINISHED (the register stage closes it), a stage that runs again (``dvc exp run -S train.rank=8`` re-trains on
the same data) opens a new pipeline run, tagged with the one it follows. ``$FITAD_PARENT_RUN_ID`` names the
parent explicitly. A failing stage marks its run and the parent FAILED with the reason; a successful re-run
puts the parent back to RUNNING and clears the reason. DVC caches the record with the stage's other outputs,
so a result restored from the cache points at the run that produced it.

Runs are tagged with the git commit (``mlflow.source.git.commit``, as MLflow's UI expects), whether the tree
was dirty, and the DVC md5 of each data input (``fitad.md5.<path>``, the value ``dvc.lock`` records).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from fitad.fsutil import atomic_write_json
from fitad.tracking.base import Tracker, _Base, make_tracker
from fitad.tracking.provenance import data_tags, git_tags
from fitad.tracking.store import default_tracking_uri, normalize_uri

RUN_FILE = "mlflow_run.json"
PARENT_ENV = "FITAD_PARENT_RUN_ID"
FAILURE_TAG = "fitad.failure_reason"
_OPEN = ("RUNNING", "FAILED", "SCHEDULED")


def read_run_file(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _status(client: Any, run_id: str) -> str | None:
    """The run's status, or None when the store does not know the run (a reset store, another server)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None


def upstream_parents(inputs: Iterable[str | os.PathLike], tracking_uri: str) -> list[str]:
    """Parent run ids recorded by upstream stages of the same store, newest record first."""
    found: list[tuple[float, str]] = []
    for item in inputs:
        folder = Path(item)
        for candidate in (folder, folder.parent):
            record = read_run_file(candidate)
            if (record and record.get("parent_run_id")
                    and normalize_uri(str(record.get("tracking_uri", ""))) == tracking_uri):
                found.append(((candidate / RUN_FILE).stat().st_mtime, str(record["parent_run_id"])))
    return [parent for _, parent in sorted(found, reverse=True)]


def find_parent(client: Any, inputs: Iterable[str | os.PathLike], tracking_uri: str) -> tuple[str | None, str | None]:
    """(the pipeline run to nest under, or None to open one; the finished pipeline run this one follows)."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV], None
    follows = None
    for parent in upstream_parents(inputs, tracking_uri):
        status = _status(client, parent)
        if status in _OPEN:
            return parent, None
        if status is not None and follows is None:
            follows = parent
    return None, follows


def open_pipeline_run(experiment: str, tracking_uri: str | None = None, run_name: str | None = None,
                      tags: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> str:
    """Create a parent (pipeline) run and return its id; it stays RUNNING until the last stage ends it."""
    from fitad.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(experiment=experiment, tracking_uri=tracking_uri, timeout_s=timeout_s,
                            run_name=run_name or time.strftime("pipeline-%Y%m%d-%H%M%S"),
                            tags={"fitad.pipeline": "true", **git_tags(), **(tags or {})})
    return tracker.run_id


def end_pipeline_run(client: Any, parent_run_id: str, status: str, reason: str | None = None,
                     final: bool = True) -> None:
    """Give the pipeline run a stage's outcome: FAILED with the reason, or (after a success) RUNNING again, or
    FINISHED when ``final`` (the last stage)."""
    if status == "FAILED":
        client.set_tag(parent_run_id, FAILURE_TAG, (reason or "a stage failed")[:5000])
        client.set_terminated(parent_run_id, status="FAILED")
        return
    if FAILURE_TAG in client.get_run(parent_run_id).data.tags:
        client.delete_tag(parent_run_id, FAILURE_TAG)
    if final:
        client.set_terminated(parent_run_id, status="FINISHED")
    else:
        client.update_run(parent_run_id, status="RUNNING")


class _StageRun(_Base):  # _Base: `with` closes FINISHED, or FAILED with the reason
    """Closes the stage's MLflow run, then gives the parent the stage's outcome."""

    def __init__(self, tracker: Any, parent_run_id: str, stage: str, final: bool) -> None:
        self._tracker = tracker
        self.parent_run_id = parent_run_id
        self._stage = stage
        self._final = final

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        try:
            self._tracker.close(status, reason)
        finally:  # the pipeline run learns the outcome even when closing the stage run failed
            end_pipeline_run(self._tracker.client, self.parent_run_id, status,
                             f"{self._stage}: {reason}" if reason else None, final=self._final)


def open_stage_run(kind: str, stage: str, out_dir: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                   data: Iterable[str | os.PathLike] | None = None, experiment: str = "fitad",
                   run_name: str | None = None, tags: Mapping[str, Any] | None = None,
                   tracking_uri: str | None = None, fresh: bool = True, timeout_s: float = 10.0,
                   final: bool = False, pipeline_tags: Mapping[str, Any] | None = None) -> Tracker:
    """The tracker of one stage: for ``mlflow`` a run nested under the pipeline run (found upstream through
    ``inputs``, or opened), tagged with the git commit and the md5 of each ``data`` path (default: the inputs);
    ``disk``/``none`` as :func:`make_tracker` builds them. ``final``: this stage ends the pipeline run.
    ``pipeline_tags`` (an orchestrator's run id and name) go on the pipeline run and on the stage's run."""
    out = Path(out_dir)
    if kind != "mlflow":
        return make_tracker(kind, root=out / "tracking", fresh=fresh)
    from mlflow.tracking import MlflowClient

    from fitad.tracking.mlflow_tracker import MlflowTracker
    from fitad.tracking.store import check_reachable

    uri = normalize_uri(tracking_uri) if tracking_uri else default_tracking_uri()
    check_reachable(uri, timeout_s)
    inputs = [Path(p) for p in inputs]
    data_paths = [Path(p) for p in (data if data is not None else inputs)]
    client = MlflowClient(uri)
    linked = {k: str(v) for k, v in (pipeline_tags or {}).items()}
    parent, follows = find_parent(client, inputs, uri)
    if parent is None:
        parent_tags = {**data_tags(data_paths), **({"fitad.follows_pipeline_run": follows} if follows else {}),
                       **linked}
        parent = open_pipeline_run(experiment, uri, tags=parent_tags, timeout_s=timeout_s)
    else:
        for key, value in linked.items():
            client.set_tag(parent, key, value)
    stage_tags = {"fitad.stage": stage, **git_tags(), **data_tags(data_paths), **linked,
                  **{k: str(v) for k, v in (tags or {}).items()}}
    tracker = MlflowTracker(experiment=experiment, run_name=run_name or stage, tracking_uri=uri, tags=stage_tags,
                            parent_run_id=parent, timeout_s=timeout_s)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_FILE, {"tracking_uri": uri, "experiment_id": tracker.experiment_id,
                                       "run_id": tracker.run_id, "parent_run_id": parent, "stage": stage})
    return _StageRun(tracker, parent, stage, final)  # type: ignore[return-value]
