"""CUDA paths of the speed defaults: the ``auto`` checkpointing probe, the deferred loss sync, FLUX in
bf16 with the timestep shift (skipped without a GPU)."""

from __future__ import annotations

import json

import pytest
import torch

from fitad.train import checkpoint as ckpt
from fitad.train.config import FluxLoraConfig, SDLoraConfig
from fitad.train.loop import TrainingDivergedError

pytestmark = pytest.mark.gpu

FAST = dict(rank=4, resolution=64, batch_size=2, checkpoint_every=0, validation_every=0)


def test_sd_defaults_probe_the_activations_and_sync_every_ten_steps(tiny_sd15, dataset_dir, tmp_path):
    from fitad.train.sd_lora import train_sd_lora

    cfg = SDLoraConfig(base_model=tiny_sd15, steps=12, **FAST)
    assert cfg.gradient_checkpointing == "auto" and cfg.log_every == "auto"
    result = train_sd_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    # a tiny UNet's activations fit any card: the probe ran and chose off
    assert summary["gradient_checkpointing"] is False
    assert "budget" in summary["gradient_checkpointing_reason"] and summary["log_every"] == 10
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [10, 12]
    assert sorted(result.losses) == list(range(1, 13))
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())


def test_a_nan_between_syncs_is_caught_before_the_next_checkpoint(tiny_sd15, dataset_dir, tmp_path, nan_loss_at_call):
    from fitad.train.sd_lora import train_sd_lora

    nan_loss_at_call(3)
    cfg = SDLoraConfig(base_model=tiny_sd15, **{**FAST, "steps": 8, "checkpoint_every": 2})
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 3.*step_000002"):
        train_sd_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_000002"


def test_flux_bf16_with_the_shift_and_sigma_sqrt(tiny_flux, dataset_dir, tmp_path):
    from fitad.train.flux_lora import train_flux_lora

    if not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    cfg = FluxLoraConfig(base_model=tiny_flux, steps=4, mixed_precision="bf16", loss_weighting="sigma_sqrt",
                         max_sequence_length=16, **FAST)
    result = train_flux_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["gradient_checkpointing"] is False and summary["mixed_precision"] == "bf16"
