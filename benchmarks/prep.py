"""Data-preparation benchmark: throughput with 1 and 2 workers, and quality against synth ground truth.

Synthesizes ``--n`` panels (default 48, native sizes 512-1024 px) with ``fitad.synth``, runs
``fitad.prep.run.prepare`` on them with the embedded default backends (fresh output each time, so
nothing is resumed), then scores them with ``fitad.prep.evaluate``. Prints one JSON object.
Target: >= 2 images/s with 2 workers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="number of synth panels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-quality", action="store_true", help="only measure throughput")
    args = parser.parse_args(argv)

    from fitad.config import SynthConfig
    from fitad.prep.config import PrepConfig
    from fitad.prep.evaluate import evaluate
    from fitad.prep.run import prepare
    from fitad.synth import synthesize

    out: dict = {"benchmark": "prep", "panels": args.n, "seed": args.seed, "cpu_count": os.cpu_count(),
                 "throughput": {}}
    with tempfile.TemporaryDirectory(prefix="fitad-bench-prep-") as tmp:
        data = Path(tmp) / "synth"
        synthesize(SynthConfig(n=args.n, seed=args.seed), data, progress=False)
        for workers in args.workers:
            config = PrepConfig(workers=workers)
            start = time.perf_counter()
            report = prepare(config, data, Path(tmp) / f"out-{workers}")
            wall = time.perf_counter() - start
            totals = report.totals
            out["throughput"][f"workers_{workers}"] = {
                "images_per_s": round(args.n / wall, 3),
                "wall_s": round(wall, 3),
                "images_per_s_excluding_startup": totals["images_per_s"],
                "step_ms_mean": totals["step_ms_mean"],
                "ok": totals["ok"], "skipped": totals["skipped"], "failed": totals["failed"],
                "images_written": totals["images_written"],
                "worker_processes": len(totals["worker_pids"]),
                "max_backend_loads_per_worker": totals["max_backend_loads_per_worker"],
            }
            out["backends"] = report.backends["used"]
        if not args.skip_quality:
            start = time.perf_counter()
            quality = evaluate(PrepConfig(workers=max(args.workers)), data)
            out["quality"] = {**quality.overall, "passed": quality.passed,
                              "targets": {k: f"{op} {v}" for k, (op, v) in quality.targets.items()},
                              "wall_s": round(time.perf_counter() - start, 3)}
    best = max(v["images_per_s"] for v in out["throughput"].values())
    out["target_images_per_s"] = 2.0
    out["target_met"] = out["throughput"].get("workers_2", {}).get("images_per_s", best) >= 2.0
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
