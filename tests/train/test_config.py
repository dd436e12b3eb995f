"""Training configs: defaults, validation messages, params.yaml sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitad.config import ConfigError, from_mapping, load_section
from fitad.train.config import FLUX_TARGET_MODULES, SD_TARGET_MODULES, FluxLoraConfig, SDLoraConfig

REPO = Path(__file__).resolve().parents[2]


def test_sd_defaults_follow_the_spec():
    cfg = SDLoraConfig()
    assert cfg.base_model == "stablediffusionapi/anything-v5"
    assert (cfg.rank, cfg.alpha, cfg.snr_gamma, cfg.noise_offset) == (32, 32.0, 5.0, 0.1)
    assert cfg.target_modules == SD_TARGET_MODULES and cfg.gradient_checkpointing
    assert cfg.adapter_kind == "lora"


def test_flux_defaults():
    cfg = FluxLoraConfig()
    assert cfg.base_model == "black-forest-labs/FLUX.1-dev"
    assert cfg.timestep_sampling == "logit_normal" and cfg.target_modules == FLUX_TARGET_MODULES
    assert cfg.alpha == float(cfg.rank)


@pytest.mark.parametrize("cls, key, value, message", [
    (SDLoraConfig, "rank", 0, r"train\.rank = 0 is out of range: must be >= 1"),
    (SDLoraConfig, "rank", -4, r"train\.rank = -4 is out of range"),
    (SDLoraConfig, "snr_gamma", 0.0, r"train\.snr_gamma = 0\.0 is out of range: must be > 0"),
    (SDLoraConfig, "snr_gamma", -1.0, r"train\.snr_gamma"),
    (SDLoraConfig, "alpha", 0.0, r"train\.alpha = 0\.0 is out of range"),
    (SDLoraConfig, "resolution", 100, r"train\.resolution = 100 must be a multiple of 8"),
    (FluxLoraConfig, "resolution", 520, r"train_flux\.resolution = 520 must be a multiple of 16"),
    (SDLoraConfig, "lr_scheduler", "cosine_restarts", r"train\.lr_scheduler"),
    (SDLoraConfig, "optimizer", "sgd", r"train\.optimizer"),
    (FluxLoraConfig, "timestep_sampling", "cosmap", r"train_flux\.timestep_sampling"),
    (FluxLoraConfig, "quantize_base", "fp8", r"train_flux\.quantize_base"),
    (SDLoraConfig, "caption_dropout", 1.5, r"train\.caption_dropout"),
    (SDLoraConfig, "base_model", " ", r"train\.base_model"),
])
def test_bad_values_name_the_key(cls, key, value, message):
    with pytest.raises(ConfigError, match=message):
        cls(**{key: value})


def test_dora_needs_lora_adapter():
    assert SDLoraConfig(use_dora=True).adapter_kind == "dora"
    assert SDLoraConfig(adapter_type="lokr").adapter_kind == "lokr"
    with pytest.raises(ConfigError, match="use_dora"):
        SDLoraConfig(adapter_type="lokr", use_dora=True)


def test_null_snr_gamma_disables_min_snr():
    cfg = from_mapping(SDLoraConfig, {"snr_gamma": "null", "alpha": 8, "rank": 4})
    assert cfg.snr_gamma is None and cfg.alpha == 8.0


def test_params_yaml_sections_load(monkeypatch):
    monkeypatch.delenv("FITAD_PROFILE", raising=False)
    sd = load_section(SDLoraConfig, REPO / "params.yaml")
    flux = load_section(FluxLoraConfig, REPO / "params.yaml")
    assert (sd.base_model, sd.rank) == ("tiny-sd15", 8)  # the embedded setup
    assert sd.snr_gamma == 5.0 and sd.prediction_type == "auto"
    assert flux.loss_weighting == "none" and flux.quantize_base == "none"  # "none" stays a string
    monkeypatch.setenv("FITAD_PROFILE", "production")
    sd = load_section(SDLoraConfig, REPO / "params.yaml")
    assert (sd.base_model, sd.rank, sd.resolution) == ("stablediffusionapi/anything-v5", 32, 512)
    assert sd.snr_gamma == 5.0  # keys the profile does not name keep the section's value


def test_adamw8bit_is_refused_on_cpu(monkeypatch):
    from fitad.train import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="adamw8bit.*CUDA"):
        runtime.check_backends(SDLoraConfig(optimizer="adamw8bit"))
    with pytest.raises(ConfigError, match="quantize_base = 'nf4'.*CUDA"):
        runtime.check_backends(FluxLoraConfig(quantize_base="nf4"))
    runtime.check_backends(SDLoraConfig())  # plain AdamW runs anywhere


def test_configs_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, fitad.train, fitad.cli.train; "
            "print(sorted(m for m in ('torch', 'diffusers', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from fitad.train import train_flux_lora, train_sd_lora  # the lazy names resolve

    assert callable(train_sd_lora) and callable(train_flux_lora)
