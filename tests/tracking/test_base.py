"""Tracker interface: the file and no-op backends and the factory."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from fitad.tracking import DiskTracker, NullTracker, Tracker, flatten_params, make_tracker


def test_flatten_params():
    flat = flatten_params({"rank": 4, "modules": ["to_q", "to_k"], "dataset": {"hash": "ab", "size": 3},
                           "gamma": None})
    assert flat == {"rank": "4", "modules": "to_q,to_k", "dataset.hash": "ab", "dataset.size": "3", "gamma": "None"}


def test_disk_tracker_writes_files(tmp_path):
    source = tmp_path / "lora"
    source.mkdir()
    (source / "w.safetensors").write_bytes(b"x")
    (tmp_path / "summary.json").write_text("{}")
    with DiskTracker(tmp_path / "run") as tracker:
        assert isinstance(tracker, Tracker)
        tracker.log_params({"rank": 4, "dataset": {"size": 3}})
        tracker.log_params({"steps": 10})
        tracker.log_metrics({"loss": 0.5, "lr": 1e-4}, step=1)
        tracker.log_metrics({"loss": float("nan")}, step=2)
        tracker.log_image(Image.new("RGB", (8, 8)), "step_000001_0.png", step=1)
        tracker.log_artifact(source, "lora")
        tracker.log_artifact(tmp_path / "summary.json")
    root = tmp_path / "run"
    assert json.loads((root / "params.json").read_text()) == {"rank": "4", "dataset.size": "3", "steps": "10"}
    records = tracker.metrics()
    assert records[0] == {"step": 1, "loss": 0.5, "lr": 1e-4} and records[1]["loss"] == "nan"
    assert Image.open(root / "images" / "step_000001_0.png").size == (8, 8)
    assert (root / "artifacts" / "lora" / "w.safetensors").read_bytes() == b"x"
    assert (root / "artifacts" / "summary.json").is_file()
    assert (root / "status").read_text().strip() == "FINISHED"


def test_disk_tracker_marks_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with DiskTracker(tmp_path) as tracker:
            tracker.log_metrics({"loss": 1.0}, step=1)
            raise RuntimeError("boom")
    assert (tmp_path / "status").read_text().strip() == "FAILED"


def test_null_tracker_accepts_everything(tmp_path):
    tracker = make_tracker("none")
    assert isinstance(tracker, NullTracker) and isinstance(tracker, Tracker)
    tracker.log_params({"a": 1})
    tracker.log_metrics({"loss": math.inf}, step=1)
    tracker.log_image(Image.new("RGB", (2, 2)), "x.png")
    tracker.log_artifact(tmp_path)
    tracker.close()
    assert list(tmp_path.iterdir()) == []


def test_make_tracker_choices(tmp_path):
    assert isinstance(make_tracker("disk", root=tmp_path), DiskTracker)
    with pytest.raises(ValueError, match="needs a directory"):
        make_tracker("disk")
    with pytest.raises(ValueError, match="unknown tracker 'wandb'"):
        make_tracker("wandb")


def test_fresh_disk_tracker_forgets_an_earlier_run(tmp_path):
    old = make_tracker("disk", root=tmp_path)
    old.log_params({"rank": 8, "only_in_old_run": 1})
    old.log_metrics({"loss": 1.0}, step=1)
    new = make_tracker("disk", root=tmp_path, fresh=True)
    new.log_params({"rank": 4})
    new.log_metrics({"loss": 0.5}, step=1)
    assert json.loads((tmp_path / "params.json").read_text()) == {"rank": "4"}
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
    continued = make_tracker("disk", root=tmp_path)  # a resumed run keeps what is there
    continued.log_metrics({"loss": 0.4}, step=2)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
