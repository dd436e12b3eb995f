"""Where runs and models are kept: the tracking URI, the embedded SQLite store, and a bounded reachability check.

The tracking store comes from ``MLFLOW_TRACKING_URI`` (a server in production, with the artifact store's
credentials in the usual environment variables); without it the embedded default is SQLite at
``./mlflow/mlflow.db`` with artifacts under ``./mlflow/artifacts``. For any SQLite store the artifacts go
to ``artifacts/`` beside the database file, so a store in a temp dir keeps its artifacts there too.

MLflow's HTTP client retries a dead server for minutes by default; :func:`check_reachable` answers within
``timeout_s`` instead, and :func:`bound_http_retries` caps the retries of the calls that follow.
This module does not import MLflow.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"


class TrackingUnavailableError(RuntimeError):
    """The tracking server or store cannot be used; the message says which and what to do."""


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current one) holding ``params.yaml``, else ``start``.

    The embedded store belongs to the project, so ``fitad`` run from a subfolder finds the same runs."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    return here


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the project's SQLite store as an absolute URI (the same store from any
    subfolder, and one spelling, so records written by different stages compare equal)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return normalize_uri(os.environ["MLFLOW_TRACKING_URI"])
    return f"sqlite:///{project_root() / 'mlflow' / 'mlflow.db'}"


def normalize_uri(uri: str) -> str:
    """A relative SQLite URI made absolute (from the current folder), anything else unchanged."""
    db = sqlite_path(uri)
    if db is None or db.is_absolute():
        return uri
    return f"sqlite:///{db.resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (relative or absolute), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: ``artifacts/`` beside a SQLite database; None (the server's) otherwise."""
    db = sqlite_path(uri)
    return (db.parent.resolve() / "artifacts").as_uri() if db is not None else None


def bound_http_retries() -> None:
    """Cap MLflow's HTTP retries (default: 7 with exponential backoff, minutes on a dead server), unless set."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def check_reachable(uri: str, timeout_s: float = 10.0, create: bool = True) -> None:
    """Raise :class:`TrackingUnavailableError` unless the store at ``uri`` can be used, within ``timeout_s``.

    An HTTP(S) server must answer ``GET /health``; a SQLite store needs a folder it can create (or, with
    ``create=False``, for commands that only read, the database file must exist already).
    """
    bound_http_retries()
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http(s) only)
                if response.status < 500:
                    return
                why = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise TrackingUnavailableError(
                    f"{uri} answered, but has no /health route: it is not an MLflow tracking server (wrong port "
                    "or path in MLFLOW_TRACKING_URI?)") from None
            if exc.code < 500:  # answered (auth, proxies): reachable; MLflow reports auth problems itself
                return
            why = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            why = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} did not answer within {timeout_s:g} s ({why}). Start it, or point "
            f"MLFLOW_TRACKING_URI at a reachable server, or unset it to use the local store {DEFAULT_TRACKING_URI}.")
    db = sqlite_path(uri)
    if db is not None and not create and not db.is_file():
        raise TrackingUnavailableError(f"no MLflow store at {db}: nothing has been logged or registered there yet "
                                       "(run a pipeline first, or set MLFLOW_TRACKING_URI)")
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingUnavailableError(f"MLflow store {uri}: cannot create {db.parent}: {exc}") from None


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise TrackingUnavailableError(
            f"MLflow experiment {name!r} was deleted (in the UI or API): restore it (`mlflow experiments restore "
            f"--experiment-id {found.experiment_id}`) or log to another experiment")
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri))


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, python: str = "python") -> list[str]:
    """The ``mlflow ui`` command line that shows the store at ``uri`` (artifacts served from beside SQLite)."""
    cmd = [python, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    location = artifact_location(uri)
    if location is not None:
        cmd += ["--default-artifact-root", location]
    return cmd


def describe_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in cmd)


_GLOBAL_URI_LOCK = threading.RLock()


@contextlib.contextmanager
def use_tracking_uri(uri: str, experiment_id: str | None = None) -> Iterator[None]:
    """Point MLflow's process-wide fluent state at ``uri`` (and ``experiment_id``) for the block, then restore it.

    Some MLflow APIs read only the global tracking URI (model logging, a SQLite registry resolving a
    ``models:/m-...`` source) and the current experiment (where a logged model is filed). ``set_tracking_uri``
    also writes ``$MLFLOW_TRACKING_URI``; both are put back. One block at a time per process.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    with _GLOBAL_URI_LOCK:
        saved_global, saved_env = tracking_utils._tracking_uri, {k: os.environ.get(k) for k in keys}
        mlflow.set_tracking_uri(uri)
        if experiment_id is not None:
            os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
            os.environ["MLFLOW_EXPERIMENT_ID"] = str(experiment_id)
        try:
            yield
        finally:
            if saved_global:
                mlflow.set_tracking_uri(saved_global)
            tracking_utils._tracking_uri = saved_global  # None again when it was unset
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
