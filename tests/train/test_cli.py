"""``fitad train``: the CLI door to the training stage."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fitad.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)


def test_train_command_trains_and_reports(tiny_sd15, dataset_dir, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  rank: 4\n  resolution: 64\n  validation_every: 0\n")
    out = tmp_path / "run"
    result = _run(str(dataset_dir), str(out), "--base", tiny_sd15, "--steps", "2", "--adapter", "dora",
                  "--alpha", "2", "--tracker", "disk", "--no-progress", "--params", str(params),
                  "--set", "batch_size=2")
    assert result.exit_code == 0, result.output
    assert "adapter:" in result.output and "final loss:" in result.output
    manifest = json.loads((out / "lora" / "fitad_lora.json").read_text())
    assert (manifest["adapter_type"], manifest["rank"], manifest["alpha"], manifest["steps"]) == ("dora", 4, 2.0, 2)
    tracked = json.loads((out / "tracking" / "params.json").read_text())
    assert tracked["batch_size"] == "2" and (out / "tracking" / "status").read_text().strip() == "FINISHED"


def test_bad_config_and_bad_dataset_are_one_line_errors(tiny_sd15, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  resolution: 64\n")
    result = _run(str(tmp_path), str(tmp_path / "out"), "--base", tiny_sd15, "--rank", "0",
                  "--tracker", "none", "--params", str(params))
    assert result.exit_code == 2 and "train.rank = 0 is out of range" in result.output
    result = _run(str(tmp_path / "missing"), str(tmp_path / "out"), "--base", tiny_sd15, "--tracker", "none",
                  "--params", str(params))
    assert result.exit_code == 1 and "dataset directory" in result.output and "does not exist" in result.output


def test_help_explains_every_option():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--family", "--base", "--steps", "--resume", "--tracker", "--adapter", "--set", "--params"):
        assert option in result.output
