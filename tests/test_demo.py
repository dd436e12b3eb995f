"""`fitad demo` smoke test: every stage runs on a shrunk setting and leaves its artifacts."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fitad.cli import cli
from fitad.config import ConfigError
from fitad.demo import DemoConfig


def test_demo_runs_every_stage(tmp_path, tiny_models_root, monkeypatch):
    monkeypatch.setattr("fitad.zoo.models_root", lambda root=None: tiny_models_root)  # session cache
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--panels", "2", "--steps", "2",
                                      "--tracker", "disk"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo_summary.json").read_text())
    assert list(summary["steps"]) == ["tiny base model", "synthetic panels", "prep", "LoRA training",
                                      "kohya export", "render with the exported LoRA", "product ad", "person ad"]
    assert summary["steps"]["prep"]["failed"] == 0 and summary["steps"]["prep"]["images"] >= 2
    assert (out / "train" / "lora" / "fitad_lora.json").exists()
    assert (out / "sks_lora.safetensors").stat().st_size > 0
    assert (out / "sample.png").exists()
    assert "[6/8] render with the exported LoRA" in result.output
    from PIL import Image

    from fitad.ads.result import read_ad_metadata

    for mode, size in (("product", (1080, 1350)), ("person", (1080, 1920))):
        png = out / "ads" / f"{mode}_{'instagram_portrait' if mode == 'product' else 'instagram_story'}.png"
        with Image.open(png) as img:
            assert img.size == size
        meta = read_ad_metadata(png)
        assert meta["mode"] == mode and meta["lora"]["path"] == str(out / "sks_lora.safetensors")
        assert summary["steps"][f"{mode} ad"]["kept_px"] > 1000


def test_demo_config_rejects_bad_sizes():
    with pytest.raises(ConfigError, match=r"demo\.steps = 0 is out of range"):
        DemoConfig(steps=0)
    with pytest.raises(ConfigError, match=r"demo\.tracker = 'wandb' is not allowed"):
        DemoConfig(tracker="wandb")
