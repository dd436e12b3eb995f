"""What MLflow tracking costs a training run; prints one JSON object.

tiny-sd15 at 64 px, batch 1, a metrics line every step (the CPU default, the worst case for tracking),
no checkpoints or validation renders inside the timed window. Trackers, in alternating order:
``none`` (the null tracker) and ``mlflow`` against a live ``mlflow server`` (SQLite backend,
``--serve-artifacts``) over HTTP on 127.0.0.1, as a run would log to a tracking server. For
reference it also times ``mlflow-sync``: the same server with one blocking ``log_batch`` per step
(what the tracker did before metrics were batched in the background).

Steps/s is measured over the training loop itself (first to last step callback), so everything a step
does with the tracker is inside it. Target: ``mlflow`` at most 5 % slower than ``none`` (median of
``--repeats`` runs each). About 1-2 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET_OVERHEAD = 0.05


def run_once(kind: str, url: str, dataset: Path, out: Path, steps: int) -> float:
    from fitad.tracking import make_tracker
    from fitad.tracking.mlflow_tracker import MlflowTracker
    from fitad.train.config import SDLoraConfig
    from fitad.train.sd_lora import train_sd_lora

    config = SDLoraConfig(base_model="tiny-sd15", resolution=64, rank=4, steps=steps, batch_size=1,
                          checkpoint_every=0, validation_every=0, log_every=1, seed=0, trigger="fitadtok")
    tracker = make_tracker("none") if kind == "none" else make_tracker(
        "mlflow", tracking_uri=url, experiment="bench-tracking", run_name=kind)
    if kind == "mlflow-sync":  # one blocking call per step, the way it used to be
        assert isinstance(tracker, MlflowTracker)
        tracker._metrics.add = tracker._send_metrics  # type: ignore[method-assign]
    times: list[float] = []
    with tracker:
        train_sd_lora(config, dataset, out, tracker, show_progress=False,
                      on_step=lambda step, loss: times.append(time.perf_counter()))
    return (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from train import write_dataset  # benchmarks/train.py
    from tests.tracking.conftest import _stop, start_mlflow_server

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["FITAD_HOME"] = str(tmp_path / "home")
        dataset = write_dataset(tmp_path / "data", 64)
        (tmp_path / "server").mkdir()
        url, proc = start_mlflow_server(f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}", tmp_path / "server")
        try:
            run_once("none", url, dataset, tmp_path / "warmup", 5)  # builds the tiny model, warms caches
            rates: dict[str, list[float]] = {"none": [], "mlflow": [], "mlflow-sync": []}
            for i in range(args.repeats):
                for kind in ("none", "mlflow", "mlflow-sync"):
                    rates[kind].append(run_once(kind, url, dataset, tmp_path / f"{kind}-{i}", args.steps))
        finally:
            _stop(proc)
    median = {k: statistics.median(v) for k, v in rates.items()}
    overhead = 1 - median["mlflow"] / median["none"]
    print(json.dumps({
        "benchmark": "tracking_overhead", "model": "tiny-sd15", "resolution": 64, "steps": args.steps,
        "repeats": args.repeats, "metrics_per_step": 4, "server": "mlflow server, SQLite, HTTP on 127.0.0.1",
        "steps_per_s": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "median_steps_per_s": {k: round(v, 2) for k, v in median.items()},
        "mlflow_overhead": round(overhead, 4),
        "mlflow_sync_overhead": round(1 - median["mlflow-sync"] / median["none"], 4),
        "target_overhead": TARGET_OVERHEAD, "meets_target": overhead <= TARGET_OVERHEAD,
    }, indent=2))


if __name__ == "__main__":
    main()
