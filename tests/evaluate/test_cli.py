"""``fitad evaluate`` through click: settings from --params/--set, files written, errors as one line."""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from fitad.cli import cli

from .conftest import SIZE


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["evaluate", *args], catch_exceptions=False)


def test_cli_smoke_with_disk_tracker(tmp_path, adapters, dataset):
    """Models by zoo name (clip_model default tiny-clip, base model from the adapter)."""
    params = tmp_path / "params.yaml"
    params.write_text("evaluate:\n  steps: 3\n", encoding="utf-8")
    out = tmp_path / "eval"
    result = _invoke(str(adapters["random"]), str(dataset), str(out), "--tracker", "disk", "--no-progress",
                     "--params", str(params), "--set", "steps=2", "--set", "prompts={trigger} on a poster",
                     "--set", "evaluate.seeds=7")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (metrics["n_prompts"], metrics["n_seeds"], metrics["n_reference_images"]) == (1, 1, 3)
    for name in ("clip_t", "clip_i", "effect_size", "pixel_change"):
        assert f"{name}: {metrics[name]:.4f}" in result.output.splitlines()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["config"]["steps"] == 2 and report["clip_model"]["name"] == "tiny-clip"
    assert report["base_model"] == "tiny-sd15" and report["images"][0]["prompt"] == "sks on a poster"
    assert (out / "renders" / "lora" / "p0_s7.png").is_file() and (out / "scores.csv").is_file()
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (2 * SIZE, SIZE)
    tracking = out / "tracking"
    assert (tracking / "status").read_text().strip() == "FINISHED"
    assert (tracking / "images" / "eval_grid.png").is_file() and (tracking / "artifacts" / "report.json").is_file()


def test_cli_bad_dataset_is_a_one_line_error(tmp_path, adapters):
    (tmp_path / "ds").mkdir()
    result = _invoke(str(adapters["random"]), str(tmp_path / "ds"), str(tmp_path / "out"), "--tracker", "disk",
                     "--no-progress", "--params", str(tmp_path / "none.yaml"))
    assert result.exit_code == 1
    assert "Error: no training images in" in result.output and str(tmp_path / "ds") in result.output
    assert (tmp_path / "out" / "tracking" / "status").read_text().strip() == "FAILED"


def test_cli_bad_setting_names_the_key(tmp_path, adapters, dataset):
    result = _invoke(str(adapters["random"]), str(dataset), str(tmp_path / "out"), "--tracker", "none",
                     "--params", str(tmp_path / "none.yaml"), "--set", "prompts=no placeholder")
    assert result.exit_code == 2 and "evaluate.prompts[0]" in result.output
