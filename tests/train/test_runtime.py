"""Base-model lookup and machine-dependent settings, all before any model is loaded."""

from __future__ import annotations

import pytest
import torch

from fitad.train.config import SDLoraConfig
from fitad.train.runtime import (ModelNotFoundError, check_pipeline_family, make_lr_scheduler, peak_memory_mb,
                                 resolve_base_model, resolve_mixed_precision)


def test_missing_local_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_base_model(str(tmp_path / "no-model"))


def test_directory_without_model_index(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model_index.json"):
        resolve_base_model(str(tmp_path))


def test_uncached_hub_id_offline_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"'someone/not-a-model' .*not in the Hugging Face cache.*offline"):
        resolve_base_model("someone/not-a-model")


def test_tiny_name_and_local_dir_resolve(tiny_sd15):
    assert resolve_base_model(tiny_sd15) == tiny_sd15


def test_pipeline_family_must_match(tiny_sd15, tiny_flux, tmp_path):
    check_pipeline_family(tiny_sd15, "sd15")
    check_pipeline_family(tiny_flux, "flux")
    with pytest.raises(ModelNotFoundError, match="is a FluxPipeline.*train it with --family flux"):
        check_pipeline_family(tiny_flux, "sd15")
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    with pytest.raises(ModelNotFoundError, match="StableDiffusionXLPipeline, which family 'sd15' cannot train"):
        check_pipeline_family(str(tmp_path), "sd15")


def test_mixed_precision_only_on_cuda():
    assert resolve_mixed_precision("fp16", cuda=False) == "no"
    assert resolve_mixed_precision("auto", cuda=False) == "no"
    assert resolve_mixed_precision("fp16", cuda=True) == "fp16"


def test_lr_schedule_counts_steps_per_process():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_lr_scheduler(SDLoraConfig(lr_scheduler="linear", steps=10, lr_warmup_steps=0), opt, num_processes=2)
    for _ in range(10):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5)  # 10 of 20 per-process steps


def test_peak_memory_reports_rss_on_cpu():
    value, kind = peak_memory_mb(torch.device("cpu"))
    assert kind == "cpu_max_rss" and value > 10
