"""MLflow backend of the :class:`~fitad.tracking.base.Tracker` interface.

The tracking store comes from ``MLFLOW_TRACKING_URI`` (a server in production); without it the
embedded default is SQLite at ``./mlflow/mlflow.db`` with artifacts under ``./mlflow/artifacts``.
For any SQLite store the experiment's artifacts go to ``artifacts/`` beside the database file, so a
store in a temp dir keeps its artifacts there too. The client API is used with an explicit run id,
so no global "active run" state leaks between runs in one process.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from fitad.tracking.base import _Base, flatten_params

DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"
# MLflow's limits on one log_batch call and on a param value's length.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_PARAM_CHARS = 6000


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (relative or absolute), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


class MlflowTracker(_Base):
    """One MLflow run; created on construction, ended by :meth:`close`."""

    def __init__(self, experiment: str = "fitad", run_name: str | None = None,
                 tracking_uri: str | None = None, tags: Mapping[str, str] | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri or default_tracking_uri()
        db = sqlite_path(self.tracking_uri)
        artifact_location = None
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            artifact_location = (db.parent.resolve() / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None
                         else self.client.create_experiment(experiment, artifact_location=artifact_location))
        run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.experiment_id = experiment_id
        self.run_id: str = run.info.run_id
        self._closed = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, v[:_MAX_PARAM_CHARS]) for k, v in flatten_params(params).items()]
        for i in range(0, len(flat), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=flat[i:i + _PARAMS_PER_BATCH], synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(batch), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i:i + _METRICS_PER_BATCH], synchronous=True)

    def log_image(self, image: Any, name: str, step: int | None = None) -> None:
        folder = "images"
        if isinstance(image, (str, os.PathLike)):
            if Path(image).name == name:
                self.client.log_artifact(self.run_id, str(image), folder)
                return
            from PIL import Image

            with Image.open(image) as img:
                img.load()
                image = img.copy()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            image.save(path)
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


    def close(self, status: str = "FINISHED") -> None:
        if not self._closed:
            self.client.set_terminated(self.run_id, status=status)
            self._closed = True
