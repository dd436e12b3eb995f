"""fitad.pipeline.local: reading back a kfp.local run's folder."""

from __future__ import annotations

import json
import time

from fitad.pipeline.local import STEPS, latest_run_dir, summarize_run


def _registration(run_dir, **fields):
    folder = run_dir / "register-model" / "registration"
    folder.mkdir(parents=True)
    (folder / "registration.json").write_text(json.dumps(fields))


def test_steps_are_ran_cached_or_not_run(tmp_path):
    run = tmp_path / "character-lora-2026-01-01-00-00-00-000000"
    for step in ("train-lora", "export-lora"):
        (run / step / "out").mkdir(parents=True)
    (run / "evaluate-lora").mkdir()  # a folder with nothing in it: the step did not get to write
    summary = summarize_run(run, cached=["fetch-data", "clean-text"])
    assert summary["steps"] == {s: "cached" if s in ("fetch-data", "clean-text") else
                                "ran" if s in ("train-lora", "export-lora") else "not run" for s in STEPS}


def test_a_fully_cached_run_still_names_its_mlflow_pipeline_run(tmp_path, mlflow_store):
    from fitad.tracking.lineage import open_stage_run

    with open_stage_run("mlflow", "train", tmp_path / "train", experiment="fitad") as train:
        pass
    run = tmp_path / "character-lora-x"
    _registration(run, name="fitad-sks", version="2", run_id=train.run_id, tracking_uri=mlflow_store,
                  approved=False, gate={"decision": "fail", "reasons": ["gate.min_clip_i: 0.4 < 0.5"]})
    summary = summarize_run(run, cached=STEPS[:-1])
    assert summary["mlflow"] == {"tracking_uri": mlflow_store, "pipeline_run_id": train.parent_run_id}
    assert summary["registration"]["gate"] == "fail"
    assert summary["registration"]["gate_reasons"] == ["gate.min_clip_i: 0.4 < 0.5"]


def test_latest_run_dir_is_the_newest_after_a_time(tmp_path):
    assert latest_run_dir(tmp_path) is None
    old = tmp_path / "character-lora-1"
    old.mkdir()
    started = time.time() + 5
    assert latest_run_dir(tmp_path) == old
    assert latest_run_dir(tmp_path, after=started) is None
    (tmp_path / "other-pipeline-2").mkdir()
    assert latest_run_dir(tmp_path) == old
