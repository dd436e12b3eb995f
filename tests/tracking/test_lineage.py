"""Pipeline runs: one parent, nested stage runs, failure reasons, DVC-compatible data hashes, bounded waits."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from fitad.tracking.lineage import RUN_FILE, open_stage_run  # noqa: E402
from fitad.tracking.provenance import data_md5  # noqa: E402
from fitad.tracking.store import TrackingUnavailableError, check_reachable  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FITAD_PARENT_RUN_ID", raising=False)
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def test_stages_nest_under_one_parent_and_failures_carry_their_reason(store, tmp_path):
    from mlflow.tracking import MlflowClient

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("panel")
    with open_stage_run("mlflow", "prep", tmp_path / "prepared", inputs=[raw], tracking_uri=store) as prep:
        prep.log_metrics({"images": 3}, step=0)
    record = json.loads((tmp_path / "prepared" / RUN_FILE).read_text())
    parent = record["parent_run_id"]

    with pytest.raises(ValueError, match="learning rate"):
        with open_stage_run("mlflow", "train", tmp_path / "train", inputs=[tmp_path / "prepared"],
                            tracking_uri=store):
            raise ValueError("learning rate is NaN")
    client = MlflowClient(store)
    failed = json.loads((tmp_path / "train" / RUN_FILE).read_text())
    assert failed["parent_run_id"] == parent  # found through the prepared folder's record
    run = client.get_run(failed["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["fitad.failure_reason"] == "ValueError: learning rate is NaN"
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FAILED"
    assert parent_run.data.tags["fitad.failure_reason"] == "train: ValueError: learning rate is NaN"
    assert (tmp_path / "prepared" / RUN_FILE).is_file()  # the earlier stage's output is kept

    # The re-run nests under the same parent, puts it back to RUNNING and clears the reason; the last stage ends it.
    with open_stage_run("mlflow", "train", tmp_path / "train", inputs=[tmp_path / "prepared"], tracking_uri=store):
        pass
    after = client.get_run(parent)
    assert after.info.status == "RUNNING" and "fitad.failure_reason" not in after.data.tags
    with open_stage_run("mlflow", "evaluate", tmp_path / "eval", inputs=[tmp_path / "prepared", tmp_path / "train"],
                        tracking_uri=store, final=True):
        pass
    assert client.get_run(parent).info.status == "FINISHED"
    children = client.search_runs([record["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["fitad.stage"] for r in children) == ["evaluate", "prep", "train", "train"]
    prep_run = client.get_run(record["run_id"])
    assert prep_run.data.tags[f"fitad.md5.{raw.as_posix()}"] == data_md5(raw)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert head and prep_run.data.tags["mlflow.source.git.commit"] == head

    # The pipeline run is over: a stage that runs again (a variant trained on the same data) opens a new one.
    with open_stage_run("mlflow", "train", tmp_path / "train2", inputs=[tmp_path / "prepared"], tracking_uri=store):
        pass
    again = json.loads((tmp_path / "train2" / RUN_FILE).read_text())
    assert again["parent_run_id"] != parent
    assert client.get_run(again["parent_run_id"]).data.tags["fitad.follows_pipeline_run"] == parent


def test_a_record_of_a_run_the_store_does_not_know_opens_a_new_pipeline_run(store, tmp_path):
    upstream = tmp_path / "prepared"
    upstream.mkdir()
    (upstream / RUN_FILE).write_text(json.dumps({"tracking_uri": store, "run_id": "gone", "parent_run_id": "gone"}))
    with open_stage_run("mlflow", "train", tmp_path / "train", inputs=[upstream], tracking_uri=store) as run:
        pass
    record = json.loads((tmp_path / "train" / RUN_FILE).read_text())
    assert record["parent_run_id"] not in ("gone", None) and record["run_id"] == run.run_id


def test_parent_from_environment_wins(store, tmp_path, monkeypatch):
    with open_stage_run("mlflow", "prep", tmp_path / "a", tracking_uri=store) as first:
        pass
    parent = json.loads((tmp_path / "a" / RUN_FILE).read_text())["parent_run_id"]
    monkeypatch.setenv("FITAD_PARENT_RUN_ID", parent)
    with open_stage_run("mlflow", "evaluate", tmp_path / "b", tracking_uri=store):
        pass
    assert json.loads((tmp_path / "b" / RUN_FILE).read_text())["parent_run_id"] == parent
    assert first.run_id != parent


def test_disk_and_none_kinds_write_no_lineage(tmp_path):
    with open_stage_run("disk", "prep", tmp_path / "out") as run:
        run.log_metrics({"x": 1}, step=0)
    assert (tmp_path / "out" / "tracking" / "metrics.jsonl").is_file()
    assert not (tmp_path / "out" / RUN_FILE).exists()


@pytest.mark.skipif(shutil.which("dvc") is None and not Path(os.sys.executable).with_name("dvc").exists(),
                    reason="dvc is not installed (dev extra)")
def test_data_md5_equals_what_dvc_records(tmp_path):
    """The hash tagged on runs is DVC's own: compare with `dvc add` on the same folder and file."""
    dvc = shutil.which("dvc") or str(Path(os.sys.executable).with_name("dvc"))
    repo = tmp_path / "repo"
    data = repo / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.png").write_bytes(bytes(range(256)) * 7)
    (data / "sub" / "b.txt").write_text("sks character\r\nline two\n")
    (data / "z.json").write_text('{"k": 1}')
    (repo / "single.bin").write_bytes(b"\x00\x01binary")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([dvc, "add", "-q", "data", "single.bin"], cwd=repo, check=True, env=env)
    import yaml

    recorded = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    single = yaml.safe_load((repo / "single.bin.dvc").read_text())["outs"][0]["md5"]
    assert data_md5(data) == recorded and recorded.endswith(".dir")
    assert data_md5(repo / "single.bin") == single


def test_unreachable_server_fails_fast_with_advice():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=rf"127.0.0.1:{port} did not answer within 2 s.*MLFLOW_TRACKING_URI"):
        check_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    assert time.monotonic() - start < 2


def test_a_server_that_never_answers_times_out_in_bounded_time(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hang() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    start = time.monotonic()
    try:
        from fitad.tracking.registry import Registry

        with pytest.raises(TrackingUnavailableError, match="did not answer within 1.5 s"):
            Registry(f"http://127.0.0.1:{port}", timeout_s=1.5)
        assert time.monotonic() - start < 5
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in held:
            conn.close()


def test_cli_reports_an_unreachable_server_as_a_clear_error(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fitad.cli import cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = CliRunner().invoke(cli, ["registry", "list", "fitad-sks"])
    assert result.exit_code == 1 and "did not answer" in result.output and "Traceback" not in result.output
