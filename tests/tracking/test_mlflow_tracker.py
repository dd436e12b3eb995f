"""MLflow backend against a temporary SQLite store."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("mlflow")

from fitad.tracking import Tracker, make_tracker  # noqa: E402
from fitad.tracking.mlflow_tracker import DEFAULT_TRACKING_URI, default_tracking_uri, sqlite_path  # noqa: E402


def test_default_store_belongs_to_the_project(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "params.yaml").write_text("synth: {}\n")
    expected = f"sqlite:///{project.resolve() / 'mlflow' / 'mlflow.db'}"
    monkeypatch.chdir(project / "sub" / "deeper")  # the same store from any subfolder
    assert default_tracking_uri() == expected
    monkeypatch.chdir(project)
    assert default_tracking_uri() == expected
    monkeypatch.chdir(tmp_path)  # no params.yaml above: the current folder
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_tracking_uri() == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/m.db")  # one spelling per store
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'rel' / 'm.db'}"
    assert DEFAULT_TRACKING_URI == "sqlite:///mlflow/mlflow.db"
    assert str(sqlite_path("sqlite:///mlflow/mlflow.db")) == "mlflow/mlflow.db"
    assert str(sqlite_path("sqlite:////abs/m.db")) == "/abs/m.db"
    assert sqlite_path("http://x") is None


def test_run_records_params_metrics_images_artifacts(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "fitad_lora.json").write_text("{}")
    image_file = tmp_path / "v.png"
    Image.new("RGB", (4, 4)).save(image_file)
    with make_tracker("mlflow", experiment="fitad-test", run_name="r1", tracking_uri=uri,
                      tags={"fitad.stage": "train"}) as tracker:
        assert isinstance(tracker, Tracker)
        tracker.log_params({"rank": 4, "target_modules": ["to_q", "to_k"], "dataset": {"hash": "abc", "size": 4},
                            "long": "x" * 7000, **{f"p{i}": i for i in range(120)}})
        for step, loss in enumerate([0.9, 0.7], start=1):
            tracker.log_metrics({"loss": loss, "lr": 1e-4}, step=step)
        tracker.log_image(Image.new("RGB", (4, 4)), "step_000001_0.png", step=1)
        tracker.log_image(image_file, "step_000002_0.png", step=2)
        tracker.log_artifact(tmp_path / "lora", "lora")
        run_id = tracker.run_id
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.params["rank"] == "4" and run.data.params["dataset.hash"] == "abc"
    assert run.data.params["target_modules"] == "to_q,to_k" and len(run.data.params["long"]) == 6000
    assert run.data.params["p119"] == "119" and run.data.tags["fitad.stage"] == "train"
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.9, 0.7]
    images = {f.path for f in client.list_artifacts(run_id, "images")}
    assert images == {"images/step_000001_0.png", "images/step_000002_0.png"}
    assert [f.path for f in client.list_artifacts(run_id, "lora")] == ["lora/fitad_lora.json"]
    # Artifacts of a SQLite store live beside the database.
    assert run.info.artifact_uri.startswith((tmp_path / "store" / "artifacts").as_uri())


def test_failed_run_is_marked(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError):
        with make_tracker("mlflow", tracking_uri=uri) as tracker:
            raise ValueError("bad input")
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "FAILED"


def test_step_metrics_go_in_background_batches_and_all_arrive(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = make_tracker("mlflow", tracking_uri=uri)
    calls = []
    send = tracker._send_metrics
    tracker._send_metrics = lambda batch: (calls.append(len(batch)), send(batch))
    tracker._metrics._send = tracker._send_metrics
    for step in range(1, 301):
        tracker.log_metrics({"loss": 1.0 / step, "lr": 1e-4}, step=step)
    tracker.close()
    history = MlflowClient(uri).get_metric_history(tracker.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 301))
    assert sum(calls) == 600 and len(calls) <= 3  # batches of up to 1000 values, not a call per step


def test_a_server_failing_mid_run_costs_metrics_not_the_run(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = make_tracker("mlflow", tracking_uri=uri)

    def broken(batch):
        raise ConnectionError("server went away")

    tracker._metrics._send = broken
    for step in range(5):
        tracker.log_metrics({"loss": 0.5}, step=step)
    with caplog.at_level("WARNING"):
        tracker.close()
    assert tracker._metrics.dropped == 5
    assert "5 metric values were not recorded" in caplog.text and "metrics.jsonl" in caplog.text
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FINISHED"  # the run itself is not lost


def test_validation_images_form_a_series(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    image_file = tmp_path / "v.png"
    Image.new("RGB", (8, 8), "red").save(image_file)
    with make_tracker("mlflow", tracking_uri=uri) as tracker:
        tracker.log_image(image_file, "step_000010_0.png", step=10, key="validation_0")
        tracker.log_image(Image.new("RGB", (8, 8)), "step_000020_0.png", step=20, key="validation_0")
    names = [f.path for f in MlflowClient(uri).list_artifacts(tracker.run_id, "images")]
    # MLflow's image-series layout: images/<key>+step+<step>+timestamp+...png (the UI's step slider reads it)
    series = [n for n in names if n.startswith("images/validation_0+step+") and n.endswith(".png")]
    steps = sorted(int(n.split("+step+")[1].split("+")[0]) for n in series)
    assert steps == [10, 20]


def test_failure_reason_is_tagged(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError):
        with make_tracker("mlflow", tracking_uri=uri) as tracker:
            raise RuntimeError("disk   full\nwhile saving")
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and run.data.tags["fitad.failure_reason"] == "RuntimeError: disk full while saving"


def test_flush_sends_now_and_a_full_buffer_drops_the_oldest(tmp_path):
    from mlflow.tracking import MlflowClient

    from fitad.tracking.mlflow_tracker import MetricBuffer

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = make_tracker("mlflow", tracking_uri=uri)
    tracker._metrics._every = 3600  # only flush() and close() send
    tracker.log_metrics({"loss": 0.25}, step=1)
    tracker.flush()
    assert [m.value for m in MlflowClient(uri).get_metric_history(tracker.run_id, "loss")] == [0.25]
    tracker.close()

    sent = []
    buffer = MetricBuffer(lambda batch: sent.extend(batch), flush_every_s=3600)
    buffer.MAX_WAITING = 5
    buffer.add(list(range(8)))
    buffer.close()
    assert sent == [3, 4, 5, 6, 7] and buffer.dropped == 3
