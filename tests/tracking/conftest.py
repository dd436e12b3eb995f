"""Real MLflow tracking servers for the registry tests: SQLite backend, and PostgreSQL where it is installed.

Each server is `mlflow server --serve-artifacts` on 127.0.0.1 with a free port and temp dirs, started once
per session. PostgreSQL runs as a throwaway cluster (initdb in a temp dir, its own port); `make` installs
Debian's postgresql when it runs as root with apt, and without it the Postgres test skips saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"mlflow server did not answer {url} in {timeout} s:\n{log.read_text()[-3000:]}")


def start_mlflow_server(backend_uri: str, root: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    log = root / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=root,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/health", proc, log)
    except Exception:
        _stop(proc)
        raise
    return url, proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URL of a live `mlflow server` (SQLite backend, served artifacts) for the session."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    url, proc = start_mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root)
    yield url
    _stop(proc)


def _pg_bin() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found:
            return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return versions[-1] if versions else None


@pytest.fixture(scope="session")
def postgres_uri():
    """A SQLAlchemy URI of a throwaway PostgreSQL cluster, or a skip that says why there is none."""
    pytest.importorskip("psycopg", reason="psycopg (dev extra) is needed to talk to PostgreSQL")
    bindir = _pg_bin()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`; `make` installs it when run as "
                    "root with apt)")
    # A fresh folder directly under the temp root: when running as root it is handed to the postgres user
    # (PostgreSQL refuses to run as root), without opening up pytest's private temp folders.
    root = Path(tempfile.mkdtemp(prefix="fitad-pg-"))
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and `runuser` is missing, so PostgreSQL cannot be started")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "fitad", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    log = root / "pg.log"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    subprocess.run([*run_as, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "fitad", "mlflow"],
                   check=True, capture_output=True)
    yield f"postgresql+psycopg://fitad@127.0.0.1:{port}/mlflow"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server_postgres(tmp_path_factory, postgres_uri):
    """URL of a live `mlflow server` on the PostgreSQL backend, as production runs it."""
    root = tmp_path_factory.mktemp("mlflow-pg-server")
    url, proc = start_mlflow_server(postgres_uri, root)
    yield url
    _stop(proc)


@pytest.fixture
def shared_models_home(monkeypatch, tiny_models_root):
    """FITAD_HOME whose zoo names (tiny-sd15, tiny-flux) resolve to the session's tiny models, no rebuild per test."""
    from fitad import zoo

    home = Path(tiny_models_root).parent / "fitad-home-tracking"
    (home / "models").mkdir(parents=True, exist_ok=True)
    for name in ("tiny-sd15", "tiny-flux"):
        link = home / "models" / name
        if not link.exists():
            link.symlink_to(zoo.ensure_tiny(name, tiny_models_root), target_is_directory=True)
    monkeypatch.setenv("FITAD_HOME", str(home))
    return home
