"""The doors: `fitad register`, `fitad registry ...` and `fitad mlflow ui`, on a temporary embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("mlflow")

from fitad import zoo  # noqa: E402
from fitad.cli import cli  # noqa: E402
from tests.tracking.conftest import free_port  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch, shared_models_home):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    return tmp_path


def _train_dir(root: Path, seed: int) -> Path:
    train = root / f"train{seed}"
    zoo.build_tiny_lora(train / "lora", seed=seed)
    return train


def _eval_dir(root: Path, name: str, **metrics) -> Path:
    (root / name).mkdir()
    (root / name / "metrics.json").write_text(json.dumps(metrics))
    return root / name


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_register_list_approve_rollback_history(store):
    sets = ["--set", "registry.model_name=fitad-cli", "--set", "gate.min_clip_t=0.2"]
    first = invoke("register", str(_train_dir(store, 1)),
                   str(_eval_dir(store, "e1", clip_t=0.3, clip_i=0.8, effect_size=0.2)), str(store / "r1"), *sets)
    assert first.exit_code == 0, first.output
    assert "registered fitad-cli v1" in first.output and "approved: v1" in first.output
    second = invoke("register", str(_train_dir(store, 2)),
                    str(_eval_dir(store, "e2", clip_t=0.1, clip_i=0.8, effect_size=0.2)), str(store / "r2"), *sets)
    assert "gate: fail - clip_t = 0.1000 is not >= 0.2000" in second.output
    assert "fitad registry approve fitad-cli 2 --reason" in second.output

    listing = invoke("registry", "list", "fitad-cli", "--json")
    rows = {r["version"]: r for r in json.loads(listing.output)}
    assert rows["1"]["aliases"] == ["approved"] and rows["2"]["aliases"] == ["candidate"]
    assert rows["2"]["gate"] == "fail" and rows["1"]["metrics"]["clip_i"] == pytest.approx(0.8)
    assert "fitad-cli: 2 version(s)" in invoke("registry", "list", "fitad-cli").output

    refused = CliRunner().invoke(cli, ["registry", "approve", "fitad-cli", "2", "--reason", "x"])
    assert refused.exit_code == 1 and "failed the gate" in refused.output and "Traceback" not in refused.output
    forced = invoke("registry", "approve", "fitad-cli", "2", "--reason", "client asked", "--force", "--by", "ana")
    assert "approved fitad-cli v2 (was: 1) by ana [forced]" in forced.output
    assert "approved v2 -> v1" in invoke("registry", "rollback", "fitad-cli", "--reason", "faces").output
    history = invoke("registry", "history", "fitad-cli").output.splitlines()
    assert [line.split()[2] for line in history] == ["approved", "replaced", "approved", "rolled_back", "restored"]
    assert "by ana: client asked" in history[2]


def test_register_errors_are_one_line(store):
    missing = store / "nothing"
    missing.mkdir()
    result = CliRunner().invoke(cli, ["register", str(missing), str(store), str(store / "r")])
    assert result.exit_code == 1 and "no LoRA to register" in result.output and "Traceback" not in result.output
    bad_set = CliRunner().invoke(cli, ["register", str(missing), str(store), str(store / "r"), "--set", "rank=3"])
    assert bad_set.exit_code == 2 and "registry.rank or gate.rank" in bad_set.output
    nothing = CliRunner().invoke(cli, ["registry", "rollback", "fitad-none"])
    assert nothing.exit_code == 1 and "nothing has been logged or registered there yet" in nothing.output


def test_mlflow_ui_serves_the_store(store, tmp_path):
    from fitad.tracking.lineage import open_stage_run

    with open_stage_run("mlflow", "prep", tmp_path / "logged", experiment="fitad-ui-check"):
        pass
    port = free_port()
    env = {**os.environ}
    fitad = str(Path(sys.executable).with_name("fitad"))  # the installed console script
    proc = subprocess.Popen([fitad, "mlflow", "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200 and b"MLflow" in r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.5)
        else:
            pytest.fail("the MLflow UI did not answer")
        # the UI reads the project's store: the experiment logged before it started is listed
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50",
                                    timeout=5) as r:
            names = {e["name"] for e in json.loads(r.read())["experiments"]}
        assert "fitad-ui-check" in names
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        out = proc.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}" in out


def test_mlflow_ui_print_only_names_the_store(store):
    result = invoke("mlflow", "ui", "--print-only", "--port", "5123")
    assert "--backend-store-uri sqlite:///" in result.output and "--port 5123" in result.output
    assert "--default-artifact-root file://" in result.output
