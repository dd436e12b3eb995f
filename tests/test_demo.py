"""`fitad demo` smoke test: every stage runs on a shrunk setting and leaves its artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fitad.cli import cli
from fitad.config import ConfigError
from fitad.demo import DemoConfig

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage(tmp_path, tiny_models_root, monkeypatch):
    monkeypatch.setattr("fitad.zoo.models_root", lambda root=None: tiny_models_root)  # session cache
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--panels", "2", "--steps", "8"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo_summary.json").read_text())
    assert list(summary["steps"]) == ["tiny base model", "synthetic panels", "prep", "LoRA training",
                                      "kohya export", "evaluation", "register + gate", "render with the LoRA",
                                      "product ad", "person ad"]
    assert summary["steps"]["prep"]["failed"] == 0 and summary["steps"]["prep"]["images"] >= 2
    assert (out / "train" / "lora" / "fitad_lora.json").exists()
    assert (out / "sks_lora.safetensors").stat().st_size > 0
    assert (out / "sample.png").exists() and (out / "eval" / "grid.png").exists()
    assert summary["registry"]["approved"] and summary["registry"]["name"] == "fitad-sks", json.dumps(summary["steps"]["register + gate"])
    assert "[8/10] render with the LoRA" in result.output
    assert "fitad mlflow ui" in result.output and "fitad registry list fitad-sks" in result.output

    # One pipeline run with the stages nested under it; the registered version lives in the training run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    parent = json.loads((out / "dataset" / "mlflow_run.json").read_text())["parent_run_id"]
    experiment = client.get_experiment_by_name("fitad-demo").experiment_id
    stages = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["fitad.stage"] for r in stages) == ["evaluate", "prep", "train"]
    assert client.get_run(parent).info.status == "FINISHED"
    version = client.get_model_version_by_alias("fitad-sks", "approved")
    assert version.run_id == json.loads((out / "train" / "mlflow_run.json").read_text())["run_id"]

    from PIL import Image

    from fitad.ads.result import read_ad_metadata

    for mode, size in (("product", (1080, 1350)), ("person", (1080, 1920))):
        png = out / "ads" / f"{mode}_{'instagram_portrait' if mode == 'product' else 'instagram_story'}.png"
        with Image.open(png) as img:
            assert img.size == size
        meta = read_ad_metadata(png)
        assert meta["mode"] == mode
        assert meta["lora"]["registry"] == {"name": "fitad-sks", "version": str(version.version), "alias": "approved"}
        assert summary["steps"][f"{mode} ad"]["kept_px"] > 1000


def test_demo_without_mlflow_skips_registration(tmp_path, tiny_models_root, monkeypatch):
    monkeypatch.setattr("fitad.zoo.models_root", lambda root=None: tiny_models_root)
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--panels", "1", "--steps", "1",
                                      "--tracker", "none"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo_summary.json").read_text())
    assert "needs the mlflow tracker" in summary["steps"]["register + gate"]["skipped"]
    from fitad.ads.result import read_ad_metadata

    meta = read_ad_metadata(out / "ads" / "product_instagram_portrait.png")
    assert meta["lora"]["path"] == str(out / "sks_lora.safetensors")


def test_demo_config_rejects_bad_sizes():
    with pytest.raises(ConfigError, match=r"demo\.steps = 0 is out of range"):
        DemoConfig(steps=0)
    with pytest.raises(ConfigError, match=r"demo\.tracker = 'wandb' is not allowed"):
        DemoConfig(tracker="wandb")
