"""Wall time of the character-LoRA pipeline run locally with kfp.local (``fitad pipeline run --local``); one JSON.

Three runs into a temporary folder and MLflow store, on the embedded defaults (8 synthetic panels, tiny-sd15,
30 steps, CPU): a cold run with the step cache off, the same run again with the cache on (nothing to reuse
yet: it fills the cache), then a variant (rank 4) that reuses the four prep steps from the cache and runs
train -> register again. Per step: the seconds of its MLflow run (the stage's own work), and for each pipeline
run the wall time of the whole command (process starts, imports and kfp.local's bookkeeping included).
About 2 minutes on 2 cores; most of a run's wall time is each step's process start (torch, diffusers, MLflow imports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(root: Path, store: str, *args: str) -> tuple[float, dict]:
    command = [str(Path(sys.executable).with_name("fitad")), "pipeline", "run", "--local", "--root", str(root), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": store}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"pipeline run failed:\n{done.stderr[-4000:]}")
    return seconds, json.loads(done.stdout)


def stage_seconds(store: str, pipeline_run_id: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("fitad")
    runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{pipeline_run_id}'")
    out: dict[str, float] = {}
    for r in runs:
        stage = r.data.tags.get("fitad.stage", "?")
        out[stage] = round(out.get(stage, 0.0) + (r.info.end_time - r.info.start_time) / 1000, 2)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        root = Path(tmp) / "runs"
        cold_s, cold = run(root, store, "--no-cache")
        fill_s, _ = run(root, store)
        variant_s, variant = run(root, store, "--param", "rank=4")
        report = {
            "benchmark": "pipeline_local",
            "device": "cpu",
            "cpus": os.cpu_count(),
            "defaults": "embedded (synth:8, tiny-sd15, 30 steps, 128 px)",
            "cold_run_s": round(cold_s, 1),
            "cold_steps": cold["steps"],
            "stage_s": stage_seconds(store, cold["mlflow"]["pipeline_run_id"]),
            "cache_filling_run_s": round(fill_s, 1),
            "variant_rank4_run_s": round(variant_s, 1),
            "variant_steps": variant["steps"],
            "registered": [cold["registration"]["version"], variant["registration"]["version"]],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
