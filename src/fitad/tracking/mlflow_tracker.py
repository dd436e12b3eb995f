"""MLflow backend of the :class:`~fitad.tracking.base.Tracker` interface.

The client API is used with an explicit run id, so no global "active run" state leaks between runs in
one process. Step metrics never wait for the server: they are buffered and sent in batches by a
background thread (every ``flush_every_s`` seconds, or sooner when 1000 are waiting); :meth:`close`
sends the rest. A server that fails mid-run costs the metrics it did not take (counted and reported
at close), never the training run; the run's own ``metrics.jsonl`` on disk keeps every value.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from fitad.tracking.base import _Base, flatten_params
from fitad.tracking.store import (DEFAULT_TRACKING_URI, check_reachable, default_tracking_uri, experiment_id,
                                  sqlite_path)

__all__ = ["DEFAULT_TRACKING_URI", "MlflowTracker", "default_tracking_uri", "sqlite_path"]

log = logging.getLogger(__name__)

# MLflow's limits on one log_batch call, a param value's and a tag value's length.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TAGS_PER_BATCH = 100
_MAX_PARAM_CHARS = 6000
_MAX_TAG_CHARS = 5000
PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "fitad.failure_reason"


class MetricBuffer:
    """Collects metrics and hands them to ``send`` in batches from a background thread."""

    MAX_WAITING = 200_000  # values kept while the server is down; beyond that the oldest are dropped (counted)

    def __init__(self, send: Callable[[list], None], flush_every_s: float = 2.0, batch: int = _METRICS_PER_BATCH):
        self._send = send
        self._every = flush_every_s
        self._batch = batch
        self._items: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._flushed = threading.Condition()
        self._rounds = 0  # drains done by the worker, for flush() to wait on
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.error: BaseException | None = None

    def add(self, items: list) -> None:
        with self._lock:
            self._items.extend(items)
            if len(self._items) > self.MAX_WAITING:
                excess = len(self._items) - self.MAX_WAITING
                del self._items[:excess]
                self.dropped += excess
            full = len(self._items) >= self._batch
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="fitad-mlflow-metrics", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._every)
            self._wake.clear()
            self._drain()
            with self._flushed:
                self._rounds += 1
                self._flushed.notify_all()
            if self._stopping:
                self._drain()
                return

    def flush(self, timeout_s: float = 60.0) -> None:
        """Have the worker send what is waiting now, and wait for it (one sender: the counters stay exact)."""
        if self._thread is None or not self._thread.is_alive():
            self._drain()
            return
        with self._flushed:
            target = self._rounds + 2  # a round that started before this call may have missed the newest values
            self._wake.set()
            while self._rounds < target and self._thread.is_alive():
                if not self._flushed.wait(timeout_s):
                    break
                self._wake.set()

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for i in range(0, len(items), self._batch):
            chunk = items[i:i + self._batch]
            try:
                self._send(chunk)
                self.sent += len(chunk)
            except Exception as exc:  # the server went away: count, keep training
                self.dropped += len(chunk)
                self.error = exc

    def close(self, timeout_s: float = 120.0) -> None:
        """Send everything still waiting and stop the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # the server is too slow: what is still waiting will not be sent
                with self._lock:
                    self.dropped += len(self._items)
                    self._items = []
        else:
            self._drain()


class MlflowTracker(_Base):
    """One MLflow run; created on construction, ended by :meth:`close`.

    ``parent_run_id`` nests the run under a pipeline run (the MLflow UI shows it as a child).
    An unreachable server raises :class:`~fitad.tracking.store.TrackingUnavailableError` within ``timeout_s``.
    """

    def __init__(self, experiment: str = "fitad", run_name: str | None = None,
                 tracking_uri: str | None = None, tags: Mapping[str, str] | None = None,
                 parent_run_id: str | None = None, flush_every_s: float = 2.0, timeout_s: float = 10.0) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        check_reachable(self.tracking_uri, timeout_s)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_id = experiment_id(self.client, experiment, self.tracking_uri)
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id: str = run.info.run_id
        self.parent_run_id = parent_run_id
        self._metrics = MetricBuffer(self._send_metrics, flush_every_s)
        self._closed = False

    def _send_metrics(self, batch: list) -> None:
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, v[:_MAX_PARAM_CHARS]) for k, v in flatten_params(params).items()]
        for i in range(0, len(flat), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=flat[i:i + _PARAMS_PER_BATCH], synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics.add([Metric(k, float(v), now, int(step)) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)[:_MAX_TAG_CHARS]) for k, v in tags.items()]
        for i in range(0, len(items), _TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + _TAGS_PER_BATCH], synchronous=True)

    def log_image(self, image: Any, name: str, step: int | None = None, key: str | None = None) -> None:
        """With ``step`` and ``key``: a frame of the image series ``key`` (the MLflow UI steps through it);
        otherwise the file ``images/<name>``."""
        if isinstance(image, (str, os.PathLike)):
            if step is None or key is None:
                if Path(image).name == name:
                    self.client.log_artifact(self.run_id, str(image), "images")
                    return
            from PIL import Image

            with Image.open(image) as img:
                img.load()
                image = img.convert("RGB")
        if step is not None and key is not None:
            self.client.log_image(self.run_id, image, key=key, step=int(step))
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            image.save(path)
            self.client.log_artifact(self.run_id, str(path), "images")

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def flush(self) -> None:
        """Send the buffered metrics now (they are otherwise sent every few seconds and at close)."""
        self._metrics.flush()

    def close(self, status: str = "FINISHED", reason: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._metrics.close()
        if self._metrics.dropped:
            log.warning("MLflow run %s: %d metric values were not recorded (%s); the run's metrics.jsonl has them",
                        self.run_id, self._metrics.dropped, self._metrics.error)
        if reason:
            self.set_tags({FAILURE_TAG: reason})
        self.client.set_terminated(self.run_id, status=status)
