"""CUDA-only training paths: mixed precision, 8-bit AdamW, NF4 FLUX base (skipped without a GPU)."""

from __future__ import annotations

import json

import pytest
import torch

from fitad.train.config import FluxLoraConfig, SDLoraConfig

pytestmark = pytest.mark.gpu

FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=2,
            validation_inference_steps=2)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_sd_mixed_precision(tiny_sd15, dataset_dir, tmp_path, precision):
    from fitad.train.sd_lora import train_sd_lora

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    result = train_sd_lora(SDLoraConfig(base_model=tiny_sd15, mixed_precision=precision, **FAST), dataset_dir,
                           tmp_path, show_progress=False)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["mixed_precision"] == precision and summary["memory_kind"] == "cuda_max_allocated"
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()


def test_sd_adamw8bit(tiny_sd15, dataset_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from fitad.train.sd_lora import train_sd_lora

    result = train_sd_lora(SDLoraConfig(base_model=tiny_sd15, optimizer="adamw8bit", **FAST), dataset_dir, tmp_path,
                           show_progress=False)
    assert result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))


def test_flux_nf4_base_with_offloaded_encoders(tiny_flux, dataset_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from fitad.train.flux_lora import train_flux_lora

    cfg = FluxLoraConfig(base_model=tiny_flux, quantize_base="nf4", offload_encoders=True, max_sequence_length=16,
                         **FAST)
    result = train_flux_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    assert result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))
    assert (tmp_path / "validation" / "step_000002_0.png").is_file()
