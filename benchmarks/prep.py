"""Data-preparation benchmark: speed and quality on both panel generators, one JSON.

Draws ``--n`` panels with ``fitad.synth`` and ``--n-styles`` with each split of ``fitad.synth_styles``
(``dev``: the panels the prep code was tuned on; ``holdout``: its own seeds and fonts, never tuned on),
runs ``fitad.prep.run.prepare`` on each set with the embedded default backends (fresh output each time, so
nothing is resumed) and scores them with ``fitad.prep.evaluate`` (text recall overall and per kind,
residual text, characters found, character IoU, whole-character crops, false subjects per panel).
Targets: >= 4 images/s with 2 workers on 2 cores; the quality targets of ``fitad.prep.evaluate.TARGETS``.
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

TARGET_IMAGES_PER_S = 4.0


def draw(kind: str, n: int, seed: int, out: Path) -> None:
    if kind == "synth":
        from fitad.config import SynthConfig
        from fitad.synth import synthesize

        synthesize(SynthConfig(n=n, seed=seed), out, progress=False)
    else:
        from fitad.synth_styles import synthesize_styles

        synthesize_styles(out, n, seed=seed, split=kind.split("_", 1)[1])


def measure(data: Path, out: Path, workers: list[int], quality: bool) -> dict:
    from fitad.prep.config import PrepConfig
    from fitad.prep.evaluate import evaluate
    from fitad.prep.run import prepare

    result: dict = {"throughput": {}}
    for count in workers:
        start = time.perf_counter()
        report = prepare(PrepConfig(workers=count), data, out / f"prepared-{count}")
        wall = time.perf_counter() - start
        totals = report.totals
        result["throughput"][f"workers_{count}"] = {
            "images_per_s": round(totals["inputs"] / wall, 3), "wall_s": round(wall, 3),
            "images_per_s_excluding_startup": totals["images_per_s"], "step_ms_mean": totals["step_ms_mean"],
            "ok": totals["ok"], "skipped": totals["skipped"], "failed": totals["failed"],
            "images_written": totals["images_written"], "worker_processes": len(totals["worker_pids"]),
            "max_backend_loads_per_worker": totals["max_backend_loads_per_worker"]}
        result["backends"] = report.backends["used"]
    if quality:
        start = time.perf_counter()
        scored = evaluate(PrepConfig(workers=max(workers)), data)
        result["quality"] = {**scored.overall, "passed": scored.passed, "all_passed": scored.all_passed,
                             "wall_s": round(time.perf_counter() - start, 3)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="fitad.synth panels")
    parser.add_argument("--n-styles", type=int, default=40, help="fitad.synth_styles panels per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sets", nargs="+", default=["synth", "styles_dev", "styles_holdout"],
                        choices=["synth", "styles_dev", "styles_holdout"])
    parser.add_argument("--skip-quality", action="store_true", help="only measure throughput")
    args = parser.parse_args(argv)

    from fitad.prep.evaluate import TARGETS

    out: dict = {"benchmark": "prep", "seed": args.seed, "cpu_count": os.cpu_count(), "workers": args.workers,
                 "targets": {"images_per_s_workers_2": f">= {TARGET_IMAGES_PER_S}",
                             **{k: f"{op} {v}" for k, (op, v) in TARGETS.items()}}, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="fitad-bench-prep-") as tmp:
        for name in args.sets:
            data = Path(tmp) / name
            panels = args.n if name == "synth" else args.n_styles
            draw(name, panels, args.seed, data)
            out["sets"][name] = {"panels": panels, **measure(data, Path(tmp) / f"out-{name}", args.workers,
                                                              not args.skip_quality)}
    speeds = [s["throughput"].get("workers_2", {}).get("images_per_s") for s in out["sets"].values()]
    # null when no run used 2 workers: not measured
    out["speed_target_met"] = None if None in speeds else all(v >= TARGET_IMAGES_PER_S for v in speeds)
    if not args.skip_quality:
        out["quality_targets_met"] = {name: s["quality"]["all_passed"] for name, s in out["sets"].items()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
