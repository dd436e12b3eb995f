"""Registry rules on an embedded store: one version per training run, rollback order without clocks, moves made
outside fitad, failed training runs, and store problems reported as one line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("mlflow")

from fitad import zoo  # noqa: E402
from fitad.cli import cli  # noqa: E402
from fitad.tracking.config import GateConfig, RegistryConfig  # noqa: E402
from fitad.tracking.lineage import RUN_FILE, open_stage_run  # noqa: E402
from fitad.tracking.register import RegisterError, register_lora  # noqa: E402
from fitad.tracking.registry import Registry  # noqa: E402

PASS = {"clip_t": 0.3, "clip_i": 0.8, "effect_size": 0.2}


@pytest.fixture
def store(tmp_path, monkeypatch, shared_models_home):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _trained(root: Path, uri: str, seed: int) -> Path:
    train = root / f"train{seed}"
    zoo.build_tiny_lora(train / "lora", seed=seed)
    with open_stage_run("mlflow", "train", train, tracking_uri=uri):
        pass
    return train


def _eval(root: Path, name: str, metrics: dict) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "metrics.json").write_text(json.dumps(metrics))
    return root / name


def test_one_version_per_training_run(store, tmp_path):
    cfg = RegistryConfig(model_name="fitad-once")
    train = _trained(tmp_path, store, 1)
    strict = GateConfig(min_clip_t=0.5)
    first = register_lora(cfg, strict, train, _eval(tmp_path, "e", PASS), tmp_path / "r", tracking_uri=store)
    assert (first.version, first.gate.decision, first.approved) == ("1", "fail", False)
    # register runs again (the gate's settings changed): the same version is gated again, not a new one
    again = register_lora(cfg, GateConfig(), train, _eval(tmp_path, "e", PASS), tmp_path / "r", tracking_uri=store)
    assert (again.version, again.gate.decision, again.approved) == ("1", "pass", True)
    registry = Registry(store)
    assert [v.version for v in registry.versions("fitad-once")] == ["1"]
    assert json.loads((tmp_path / "r" / "registration.json").read_text())["aliases"] == ["approved", "candidate"]
    assert registry.alias_version("fitad-once", "approved") == "1"


def test_a_failed_training_run_is_not_registered(store, tmp_path):
    train = tmp_path / "train"
    zoo.build_tiny_lora(train / "lora", seed=2)
    with pytest.raises(RuntimeError):
        with open_stage_run("mlflow", "train", train, tracking_uri=store):
            raise RuntimeError("out of memory")
    with pytest.raises(RegisterError, match=r"FAILED \(RuntimeError: out of memory\); not registering it"):
        register_lora(RegistryConfig(model_name="fitad-x"), GateConfig(), train, _eval(tmp_path, "e", PASS),
                      tmp_path / "r", tracking_uri=store)


def test_rollback_follows_the_approval_order_not_the_clocks(store, tmp_path, monkeypatch):
    cfg = RegistryConfig(model_name="fitad-clock")
    for seed in (1, 2, 3):
        register_lora(cfg, GateConfig(enabled=False), _trained(tmp_path, store, seed),
                      _eval(tmp_path, f"e{seed}", PASS), tmp_path / f"r{seed}", tracking_uri=store)
    registry = Registry(store)
    # approvals from machines whose clocks disagree: v2's reviewer is two minutes ahead of v3's gate
    clocks = iter(["2026-01-01T10:00:00.000Z", "2026-01-01T10:05:00.000Z", "2026-01-01T10:03:00.000Z"])
    monkeypatch.setattr("fitad.tracking.registry._now", lambda: next(clocks))
    for version in ("1", "2", "3"):
        registry.approve("fitad-clock", version, f"approve v{version}", by="x")
    monkeypatch.setattr("fitad.tracking.registry._now", lambda: "2026-01-01T10:06:00.000Z")
    assert registry.rollback("fitad-clock", "bad")["to"] == "2"
    assert registry.rollback("fitad-clock", "bad too")["to"] == "1"


def test_rollback_after_the_alias_was_moved_in_the_mlflow_ui(store, tmp_path):
    cfg = RegistryConfig(model_name="fitad-ui")
    for seed in (1, 2):
        register_lora(cfg, GateConfig(enabled=False), _trained(tmp_path, store, seed),
                      _eval(tmp_path, f"e{seed}", PASS), tmp_path / f"r{seed}", tracking_uri=store)
    registry = Registry(store)
    registry.approve("fitad-ui", "1", "first", by="x")
    registry.client.set_registered_model_alias("fitad-ui", "approved", "2")  # what the UI does: no fitad tags
    assert registry.rollback("fitad-ui", "undo the UI move")["to"] == "1"


def test_registration_nests_under_the_pipeline_run_and_finishes_it(store, tmp_path):
    from mlflow.tracking import MlflowClient

    train = _trained(tmp_path, store, 4)
    parent = json.loads((train / RUN_FILE).read_text())["parent_run_id"]
    client = MlflowClient(store)
    assert client.get_run(parent).info.status == "RUNNING"
    register_lora(RegistryConfig(model_name="fitad-nest"), GateConfig(), train, _eval(tmp_path, "e", PASS),
                  tmp_path / "r", tracking_uri=store)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["fitad.registered_model"] == "fitad-nest"
    assert not (Path.cwd() / "mlruns").exists()  # the logged model lives with its run, not in ./mlruns


def test_store_problems_are_one_line_errors(tmp_path, monkeypatch):
    class NotMlflow(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
        result = CliRunner().invoke(cli, ["registry", "list", "fitad-sks"])
        assert result.exit_code == 1 and "not an MLflow tracking server" in result.output
        assert "Traceback" not in result.output
    finally:
        server.shutdown()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    result = CliRunner().invoke(cli, ["registry", "list", "fitad-sks"])
    assert result.exit_code == 1 and "nothing has been logged or registered there yet" in result.output
    assert not (tmp_path / "none").exists()  # reading did not create a store


def test_a_deleted_experiment_is_named(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from fitad.tracking.store import TrackingUnavailableError

    with open_stage_run("mlflow", "prep", tmp_path / "a", tracking_uri=store, experiment="fitad-gone"):
        pass
    client = MlflowClient(store)
    client.delete_experiment(client.get_experiment_by_name("fitad-gone").experiment_id)
    with pytest.raises(TrackingUnavailableError, match="'fitad-gone' was deleted.*mlflow experiments restore"):
        open_stage_run("mlflow", "prep", tmp_path / "b", tracking_uri=store, experiment="fitad-gone")
