"""``fitad pipeline run --local``: the whole pipeline through kfp.local on the embedded defaults, a failing run,
and the re-run that starts where it failed. Real kfp.local (SubprocessRunner), real MLflow (a SQLite store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREP_STEPS = ["fetch-data", "clean-text", "crop-subjects", "caption-dataset"]


def run_pipeline(root: Path, store: str, *params: str) -> tuple[subprocess.CompletedProcess, dict]:
    args = [str(Path(sys.executable).with_name("fitad")), "pipeline", "run", "--local", "--root", str(root)]
    for param in params:
        args += ["--param", param]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": store}
    env.pop("FITAD_PROFILE", None)
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    summary = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done, summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run that fails at training (a base model that does not exist), then the same data with the default
    model; each outcome is read from MLflow right after its run."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("kfp-local")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    root = tmp / "runs"
    client = MlflowClient(store)

    def state() -> list:
        experiment = client.get_experiment_by_name("fitad")
        return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])

    failed, failed_summary = run_pipeline(root, store, "base_model=no-such-model")
    after_failure = state()
    ok, ok_summary = run_pipeline(root, store)
    return {"failed": failed, "failed_summary": failed_summary, "after_failure": after_failure, "ok": ok,
            "summary": ok_summary, "runs": state(), "client": client, "root": root}


def _stages(runs: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags.get("fitad.stage", "pipeline"), []).append(run)
    return out


def test_a_failing_step_fails_the_run_with_its_reason_and_keeps_what_came_before(runs):
    done, summary = runs["failed"], runs["failed_summary"]
    assert done.returncode == 1
    assert "train-lora" in done.stderr and "no-such-model" in done.stderr
    assert "the outputs of the steps that finished are kept" in done.stderr
    assert [summary["steps"][s] for s in PREP_STEPS] == ["ran"] * 4
    assert summary["steps"]["register-model"] == "not run"
    run_dir = Path(summary["run_dir"])
    assert sorted(p.name for p in (run_dir / "caption-dataset" / "dataset" / "images").glob("*.png"))
    stages = _stages(runs["after_failure"])
    train, = stages["train"]
    assert train.info.status == "FAILED"
    assert "no-such-model" in train.data.tags["fitad.failure_reason"]
    parent, = stages["pipeline"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["fitad.failure_reason"].startswith("train:")
    assert all(r.info.status == "FINISHED" for s in ("fetch", "clean-text", "crop-subjects", "caption")
               for r in stages[s])


def test_the_rerun_reuses_the_cached_steps_and_registers(runs):
    done, summary = runs["ok"], runs["summary"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert [summary["steps"][s] for s in PREP_STEPS] == ["cached"] * 4
    assert [summary["steps"][s] for s in ("train-lora", "export-lora", "evaluate-lora", "register-model")] == \
        ["ran"] * 4
    # the terminal gets one line per step; the steps' whole logs go to the run root's last-run.log
    assert done.stderr.count("finished with status SUCCESS") == 5 + 1  # 4 ran + the exit handler, + the pipeline
    assert "parameterValues" not in done.stderr
    assert "parameterValues" in (runs["root"] / "last-run.log").read_text()
    registration = summary["registration"]
    assert registration["name"] == "fitad-sks" and registration["version"] == "1"
    assert registration["gate"] == "pass" and registration["approved"] is True
    stages = _stages(runs["runs"])
    # cached steps did not run again: one MLflow run each; training ran twice (failed, then finished)
    assert [len(stages[s]) for s in ("fetch", "clean-text", "crop-subjects", "caption")] == [1, 1, 1, 1]
    assert [r.info.status for r in stages["train"]] == ["FAILED", "FINISHED"]


def test_mlflow_runs_and_the_version_are_linked_to_the_pipeline_run(runs):
    summary, client = runs["summary"], runs["client"]
    run_name = Path(summary["run_dir"]).name  # kfp.local names the run's folder after the run
    stages = _stages(runs["runs"])
    parent, = stages["pipeline"]
    assert parent.info.status == "FINISHED" and "fitad.failure_reason" not in parent.data.tags
    assert parent.info.run_id == summary["mlflow"]["pipeline_run_id"]
    assert parent.data.tags["kfp.pipeline_run_name"] == run_name
    run_id = parent.data.tags["kfp.pipeline_run_id"]
    assert run_id
    for stage, members in stages.items():
        if stage != "pipeline":
            assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in members), stage
    version = client.get_model_version("fitad-sks", "1")
    assert version.tags["kfp.pipeline_run_id"] == run_id
    assert version.tags["kfp.pipeline_run_name"] == run_name
    assert version.run_id == stages["train"][-1].info.run_id
    assert str(client.get_model_version_by_alias("fitad-sks", "approved").version) == "1"


def test_every_step_handed_its_artifacts_on(runs):
    run_dir = Path(runs["summary"]["run_dir"])
    assert (run_dir / "train-lora" / "model" / "lora" / "fitad_lora.json").is_file()
    assert [p.name for p in (run_dir / "export-lora" / "kohya").iterdir()] == ["sks_lora.safetensors"]
    evaluation = run_dir / "evaluate-lora"
    metrics = json.loads((evaluation / "evaluation" / "metrics.json").read_text())
    assert {"clip_t", "clip_i", "effect_size"} <= set(metrics)
    page = (evaluation / "samples").read_text()
    assert "data:image/png;base64," in page and "clip_i" in page
    logged = json.loads((evaluation / "metrics").read_text())  # the Metrics artifact the UI shows
    assert logged["clip_i"] == pytest.approx(metrics["clip_i"])
    registration = json.loads((run_dir / "register-model" / "registration" / "registration.json").read_text())
    assert registration["version"] == "1"
