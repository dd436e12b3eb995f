"""Speed and content of the synthetic panel generator (fitad.synth); prints one JSON object.

Target: 48 panels of 512-1024 px in well under 20 s on one CPU core.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fitad.config import SynthConfig
from fitad.synth import synthesize

TARGET_S = 20.0


def main(n: int = 48) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = synthesize(SynthConfig(n=n, seed=0), Path(tmp), progress=False)
        seconds = time.perf_counter() - start
        metas = [json.loads(p.with_suffix(".json").read_text(encoding="utf-8")) for p in paths]
    fractions = np.array([c["area"] / (m["width"] * m["height"]) for m in metas for c in m["characters"]])
    text_heights = [t["box"][3] - t["box"][1] for m in metas for t in m["texts"]]
    return {
        "benchmark": "synth", "panels": n, "seconds": round(seconds, 3),
        "panels_per_s": round(n / seconds, 2), "target_s": TARGET_S, "meets_target": seconds < TARGET_S,
        "texts_per_panel": round(len(text_heights) / n, 2),
        "min_text_height_px": min(text_heights) if text_heights else None,
        "characters_per_panel": round(len(fractions) / n, 2),
        "character_area_fraction_median": round(float(np.median(fractions)), 3),
        "character_area_fraction_in_10_45_pct":
            round(float(((fractions >= 0.1) & (fractions <= 0.45)).mean()), 3),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)))
