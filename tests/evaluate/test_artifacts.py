"""What an evaluation writes (metrics.json, report.json, grid.png, renders/) and what the tracker receives."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from fitad.evaluate import evaluate_lora

from .conftest import PROMPTS, SEEDS, SIZE, read_json

METRIC_KEYS = {"clip_t", "clip_t_base", "clip_t_delta", "clip_i", "clip_i_base", "clip_i_delta", "effect_size",
               "pixel_change", "n_prompts", "n_seeds", "n_reference_images"}


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read_json_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_metrics_json_is_flat_numbers(evaluated):
    metrics = read_json(evaluated["out"] / "metrics.json")
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())
    assert metrics == evaluated["result"].metrics


def test_grid_is_base_and_lora_columns_one_row_per_prompt_and_seed(evaluated):
    out = evaluated["out"]
    rows = read_json(out / "report.json")["images"]
    grid = _png(out / "grid.png")
    assert grid.shape == (len(PROMPTS) * len(SEEDS) * SIZE, 2 * SIZE, 3)
    for k, row in enumerate(rows):
        band = grid[k * SIZE:(k + 1) * SIZE]
        assert np.array_equal(band[:, :SIZE], _png(out / row["base"]))
        assert np.array_equal(band[:, SIZE:], _png(out / row["lora"]))
    assert sorted(p.name for p in (out / "renders" / "lora").iterdir()) == sorted(
        f"p{i}_s{s}.png" for i in range(len(PROMPTS)) for s in SEEDS)


def test_scores_csv_has_one_row_per_prompt_and_seed(evaluated):
    rows = read_json(evaluated["out"] / "report.json")["images"]
    with open(evaluated["out"] / "scores.csv", encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) == len(PROMPTS) * len(SEEDS)
    for line, row in zip(table, rows):
        assert (int(line["prompt_index"]), int(line["seed"]), line["prompt"]) == (row["prompt_index"], row["seed"],
                                                                                  row["prompt"])
        for name in ("clip_t", "clip_i", "effect_size", "pixel_change"):
            assert float(line[name]) == row[name]


def test_report_records_config_adapter_and_models(evaluated, adapters, models):
    report = read_json(evaluated["out"] / "report.json")
    assert report["config"]["prompts"] == PROMPTS and report["config"]["seeds"] == SEEDS
    assert report["adapter"]["ref"] == str(adapters["random"]) and report["adapter"]["trigger"] == "sks"
    assert report["clip_model"]["name"] == models["clip"]
    assert report["base_model"] == models["sd15"] and report["family"] == "sd15" and report["resolution"] == SIZE
    assert report["reference_images"] == ["img0.png", "img1.png", "img2.png"]
    assert report["metrics"] == evaluated["result"].metrics
    assert {"clip_load", "render", "clip_score", "total"} <= set(report["timings"])


def test_disk_tracker_receives_params_metrics_grid_and_report(evaluated, adapters):
    tracking, out = evaluated["tracking"], evaluated["out"]
    records = read_json_lines(tracking / "metrics.jsonl")
    assert len(records) == 1 and records[0]["step"] == 0
    assert {k: v for k, v in records[0].items() if k != "step"} == evaluated["result"].metrics
    assert (tracking / "images" / "eval_grid.png").read_bytes() == (out / "grid.png").read_bytes()
    assert read_json(tracking / "artifacts" / "report.json") == read_json(out / "report.json")
    params = read_json(tracking / "params.json")
    assert params["adapter"] == str(adapters["random"]) and params["trigger"] == "sks"
    assert params["evaluate.clip_model"] == read_json(out / "report.json")["clip_model"]["name"]
    assert params["evaluate.seeds"] == ",".join(map(str, SEEDS))
    assert (tracking / "status").read_text().strip() == "FINISHED"


def test_rerun_replaces_renders_of_an_earlier_run(tmp_path, eval_config, adapters, dataset, renderer):
    out = tmp_path / "out"
    evaluate_lora(eval_config(seeds=[0, 1], prompts=["{trigger}"]), adapters["random"], dataset, out,
                  show_progress=False, renderer=renderer)
    result = evaluate_lora(eval_config(seeds=[1], prompts=["{trigger}"]), adapters["random"], dataset, out,
                           show_progress=False, renderer=renderer)
    assert sorted(p.name for p in (out / "renders" / "base").iterdir()) == ["p0_s1.png"]
    assert _png(out / "grid.png").shape == (SIZE, 2 * SIZE, 3)
    assert read_json(out / "metrics.json")["n_seeds"] == 1 == result.metrics["n_seeds"]
