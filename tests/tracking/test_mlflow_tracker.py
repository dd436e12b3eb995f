"""MLflow backend against a temporary SQLite store."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("mlflow")

from fitad.tracking import Tracker, make_tracker  # noqa: E402
from fitad.tracking.mlflow_tracker import DEFAULT_TRACKING_URI, default_tracking_uri, sqlite_path  # noqa: E402


def test_default_store_and_uri_parsing(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_tracking_uri() == "http://mlflow:5000"
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
