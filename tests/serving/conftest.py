"""The real ad service: ``bentoml serve serving.service:AdService`` on 127.0.0.1 with tiny models, a SQLite MLflow
registry (``fitad-test`` v1 approved, v2 candidate), API keys of every tier and a quota database in tmp."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("bentoml")
pytest.importorskip("mlflow")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).with_name("bentoml")
MODEL = "fitad-test"
KEYS = {"free": "free-key-0123456789", "pro": "pro-key-0123456789", "admin": "admin-key-0123456789"}
READY_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``bentoml serve`` process group; ``stop()`` sends SIGTERM, then kills the group."""

    def __init__(self, env: dict, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen([str(BENTOML), "serve", "serving.service:AdService", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, deadline_s: float = READY_S) -> "Server":
        deadline = time.monotonic() + deadline_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited rc={self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"service not ready in {deadline_s} s:\n{self.tail()}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # workers left behind by the arbiter
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._log.close()


def build_world(root: Path, models_root: "os.PathLike | None" = None, serve: dict | None = None,
                generate: dict | None = None, ads: dict | None = None) -> SimpleNamespace:
    """Registry, FITAD_HOME with tiny models, params.yaml and key file under ``root``; the server environment.

    ``serve`` / ``generate`` / ``ads`` update params.yaml's sections after the test defaults. Importable outside pytest
    (``benchmarks/serve.py`` uses it); ``models_root`` is where ``fitad.zoo.ensure_tiny`` caches the tiny models.
    """
    from fitad.serve.auth import hash_key
    from tests.registry_world import registered_store

    root = Path(root)
    store = registered_store(root, models_root, [(MODEL, "sd15", 1), (MODEL, "sd15", 2), ("fitad-other", "sd15", 3)],
                             approve=(MODEL, "fitad-other"))
    uri, home = store.uri, store.home
    keys = root / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"name": f"{tier}-user", "sha256": hash_key(raw), "tier": tier}
                                    for tier, raw in KEYS.items()]))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "embedded"
    params["generate"].update(base_model="tiny-sd15", inpaint_model=None, controlnet_model=None, steps=2)
    params["generate"].update(generate or {})
    params["ads"].update(steps=2)
    params["ads"].update(ads or {})
    params["serve"].update(model_name=MODEL, poll_s=1.0, quota_db=str(root / "quota.sqlite3"),
                           api_keys_file=str(keys), free_max_side=256, max_body_bytes=2_000_000,
                           max_queue=2)
    params["serve"].update(serve or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    (root / "bentoml").mkdir()
    env = {**os.environ, "FITAD_PARAMS": str(root / "params.yaml"), "MLFLOW_TRACKING_URI": uri,
           "FITAD_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("FITAD_API_KEYS", None)
    return SimpleNamespace(root=root, uri=uri, env=env, keys=KEYS, model=MODEL)


@pytest.fixture(scope="session")
def world(tmp_path_factory, tiny_models_root):
    """Registry, FITAD_HOME with the session's tiny models, params.yaml and key file; the server environment."""
    return build_world(tmp_path_factory.mktemp("serving"), tiny_models_root)


@pytest.fixture(scope="session")
def service(world):
    """The session's server: ``.url``; stopped (SIGTERM, then the whole process group) at the end."""
    server = Server(world.env, world.root / "serve.log").wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def url(service) -> str:
    return service.url


def auth(tier: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[tier]}"}
