"""Loading adapters (directories and exported files) into pipelines, and reading their metadata."""

from __future__ import annotations

import json

import pytest
import torch

from fitad.lora.export import export_diffusers, export_kohya
from fitad.lora.load import LoraLoadError, load_lora_into_pipeline, pipeline_family, read_lora_meta

from .conftest import max_abs_diff, render

TOL = 1e-4


def test_dir_and_kohya_file_load_alike_and_scale_applies(make_adapter, fresh_pipeline, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=2.0, text_encoder=True)
    out = export_kohya(adapter.lora_dir, tmp_path / "sks.safetensors")
    from_dir = fresh_pipeline("sd15")
    assert load_lora_into_pipeline(from_dir, adapter.lora_dir, adapter_name="sks") == "sks"
    assert max_abs_diff(render(from_dir), adapter.reference) < TOL
    from_file = fresh_pipeline("sd15")
    load_lora_into_pipeline(from_file, out, scale=0.0)
    assert max_abs_diff(render(from_file), adapter.base) < TOL  # scale 0: the adapter has no effect
    from_file.set_adapters(["fitad"], [1.0])  # the default adapter name
    assert max_abs_diff(render(from_file), adapter.reference) < TOL


def test_sd15_kohya_file_with_per_module_alphas(make_adapter, fresh_pipeline, tmp_path, caplog):
    # diffusers' kohya loader would apply one alpha to every module; the loader here keeps each module's.
    adapter = make_adapter(family="sd15", rank=4, alpha=8.0, extra={"alpha_pattern": {"to_q": 1.0}})
    with caplog.at_level("WARNING", logger="fitad.lora.export"):
        out = export_kohya(adapter.lora_dir, tmp_path / "mixed.safetensors")
    assert "different alphas [1.0, 8.0]" in caplog.text
    pipe = fresh_pipeline("sd15")
    load_lora_into_pipeline(pipe, out)
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


@pytest.mark.parametrize("family, rank, extra", [("sd15", 2, {"decompose_both": True}),
                                                 ("flux", 2, {"decompose_both": True}),
                                                 ("sd15", 8, {})])  # two full factors: .alpha = rank, ignored
def test_lokr_dir_and_lycoris_file_load_like_the_peft_adapter(make_adapter, fresh_pipeline, tmp_path, family,
                                                              rank, extra):
    adapter = make_adapter(family=family, adapter_type="lokr", rank=rank, alpha=3.0, text_encoder=True, extra=extra)
    assert max_abs_diff(adapter.reference, adapter.base) > 1e-3
    out = export_kohya(adapter.lora_dir, tmp_path / "lokr.safetensors")
    for source in (adapter.lora_dir, out):
        pipe = fresh_pipeline(family)
        load_lora_into_pipeline(pipe, source)
        assert max_abs_diff(render(pipe), adapter.reference) < TOL, source


def test_dora_dir_with_text_encoder_loads_its_magnitudes(make_adapter, fresh_pipeline):
    # Plain pipe.load_lora_weights(dir) re-initialises text-encoder DoRA magnitudes (diffusers 0.42 +
    # transformers 5 key mismatch); the loader here keeps them.
    adapter = make_adapter(family="sd15", adapter_type="dora", rank=4, alpha=2.0, text_encoder=True)
    assert max_abs_diff(adapter.reference, adapter.without_text_encoder) > 1e-3
    pipe = fresh_pipeline("sd15")
    load_lora_into_pipeline(pipe, adapter.lora_dir)
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


def test_flux_diffusers_file_loads(make_adapter, fresh_pipeline, tmp_path):
    adapter = make_adapter(family="flux", rank=2, alpha=4.0)
    out = export_diffusers(adapter.lora_dir, tmp_path / "flux.diffusers.safetensors")
    pipe = fresh_pipeline("flux")
    load_lora_into_pipeline(pipe, out)
    assert pipeline_family(pipe) == "flux"
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


def test_wrong_family_and_bad_paths_are_named(make_adapter, fresh_pipeline, tmp_path):
    adapter = make_adapter(family="sd15")
    out = export_kohya(adapter.lora_dir, tmp_path / "sd.safetensors")
    flux = fresh_pipeline("flux")
    with pytest.raises(LoraLoadError, match=r"sd\.safetensors: a sd15 adapter cannot be loaded into FluxPipeline"):
        load_lora_into_pipeline(flux, out)
    with pytest.raises(LoraLoadError, match="no such LoRA file"):
        load_lora_into_pipeline(flux, tmp_path / "missing.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(LoraLoadError, match="broken.safetensors: not a readable safetensors"):
        load_lora_into_pipeline(flux, broken)
    with pytest.raises(LoraLoadError, match="not a LoRA directory"):
        load_lora_into_pipeline(flux, tmp_path)
    from safetensors.torch import save_file

    save_file({"blocks.0.weight": torch.zeros(2, 2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(LoraLoadError, match="foreign.safetensors: could not load the adapter into FluxPipeline"):
        load_lora_into_pipeline(flux, tmp_path / "foreign.safetensors")


def test_read_lora_meta_of_dir_and_files(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=2.0)
    meta = read_lora_meta(adapter.lora_dir)
    assert (meta.format, meta.family, meta.adapter_type, meta.rank, meta.alpha, meta.trigger, meta.base_model) == (
        "dir", "sd15", "lora", 4, 2.0, "sks", "tiny-sd15")
    kohya = read_lora_meta(export_kohya(adapter.lora_dir, tmp_path / "k.safetensors"))
    assert (kohya.format, kohya.family, kohya.rank, kohya.alpha, kohya.trigger, kohya.base_model) == (
        "kohya", "sd15", 4, 2.0, "sks", "tiny-sd15")
    assert kohya.header["ss_network_module"] == "networks.lora"
    native = read_lora_meta(adapter.lora_dir / "pytorch_lora_weights.safetensors")
    assert (native.format, native.family, native.trigger) == ("diffusers", "sd15", None)
    (adapter.lora_dir / "fitad_lora.json").unlink()  # rank and alpha then come from the PEFT header
    bare = read_lora_meta(adapter.lora_dir)
    assert (bare.family, bare.rank, bare.alpha, bare.trigger) == ("sd15", 4, 2.0, None)


def test_read_lora_meta_without_trigger(make_adapter, tmp_path):
    adapter = make_adapter(family="flux", trigger=None)
    meta = read_lora_meta(export_kohya(adapter.lora_dir, tmp_path / "f.safetensors"))
    assert meta.trigger is None and meta.family == "flux"
    assert json.loads((adapter.lora_dir / "fitad_lora.json").read_text())["trigger"] is None


def test_truncated_lora_file_is_named(tmp_path):
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8), "lora_unet_x.lora_up.weight": torch.zeros(8, 4)},
              str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-40])  # header intact, tensor data missing
    with pytest.raises(LoraLoadError, match="cut.safetensors"):
        read_lora_meta(cut)
