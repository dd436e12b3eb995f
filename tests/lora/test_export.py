"""Export to the kohya/WebUI format: key names, alpha, metadata, bad input, and image round trips through diffusers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from fitad.config import ConfigError
from fitad.lora.export import (ExportConfig, ExportError, export_diffusers, export_kohya, flux_module_name,
                               kohya_alpha, kohya_module_name, lokr_lycoris_tensors, pattern_value, run)

from .conftest import max_abs_diff

TOL = 1e-4


def read(path):
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()


# ---------------------------------------------------------------- key mapping and alpha helpers

def test_kohya_names_for_unet_and_flattened_text_encoder():
    assert (kohya_module_name("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")
            == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q")
    assert kohya_module_name("unet", "mid_block.attentions.0.proj_in") == "lora_unet_mid_block_attentions_0_proj_in"
    # transformers 5 CLIPTextModel has no text_model. level; kohya names always carry it
    assert (kohya_module_name("text_encoder", "encoder.layers.0.self_attn.q_proj")
            == "lora_te_text_model_encoder_layers_0_self_attn_q_proj")
    assert (kohya_module_name("text_encoder", "text_model.encoder.layers.11.mlp.fc1")
            == "lora_te_text_model_encoder_layers_11_mlp_fc1")
    with pytest.raises(ExportError, match="text_encoder_2"):
        kohya_module_name("text_encoder_2", "encoder.layers.0.self_attn.q_proj")


def test_flux_names_keep_dotted_paths():
    assert flux_module_name("transformer", "transformer_blocks.0.attn.to_q") == "transformer.transformer_blocks.0.attn.to_q"
    assert (flux_module_name("text_encoder", "encoder.layers.1.self_attn.v_proj")
            == "text_encoder.text_model.encoder.layers.1.self_attn.v_proj")


def test_every_tiny_unet_and_text_encoder_layer_decodes_back_through_diffusers(tiny_models_root):
    """diffusers' kohya converter turns each exported name back into the exact module it came from."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import (convert_state_dict_to_diffusers, convert_state_dict_to_peft,
                                 convert_unet_state_dict_to_peft)

    from .conftest import load_pipeline

    pipe = load_pipeline("sd15", tiny_models_root)
    expected: dict[str, set[str]] = {}
    state = {}
    for component in ("unet", "text_encoder"):
        for path, module in getattr(pipe, component).named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                name = kohya_module_name(component, path)
                state[f"{name}.lora_down.weight"] = torch.zeros(1, 1)
                state[f"{name}.lora_up.weight"] = torch.zeros(1, 1)
                state[f"{name}.alpha"] = torch.tensor(1.0)
                expected.setdefault(component, set()).add(path)
    assert len(expected["unet"]) > 50  # attentions, resnets, samplers, time embedding, conv in/out
    module_count = len(state) // 3
    converted, alphas = StableDiffusionPipeline.lora_state_dict(state)
    unet = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in converted.items()
                                            if k.startswith("unet.")})
    assert {k.rsplit(".lora_", 1)[0] for k in unet} == expected["unet"]
    te = convert_state_dict_to_peft(convert_state_dict_to_diffusers(
        {k.removeprefix("text_encoder."): v for k, v in converted.items() if k.startswith("text_encoder.")}))
    assert {k.removeprefix("text_model.").rsplit(".lora_", 1)[0] for k in te} == expected["text_encoder"]
    assert len(alphas) == module_count


def test_pattern_value_follows_peft_suffix_rule():
    patterns = {"to_q": 1.0, r"^down_blocks\.0\..*\.to_k": 2.0}
    assert pattern_value(patterns, "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q") == 1.0
    assert pattern_value(patterns, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k") == 2.0
    assert pattern_value(patterns, "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k") is None
    assert pattern_value(patterns, "x.not_to_q") is None  # must match at a '.' boundary


def test_kohya_alpha_is_the_real_alpha_not_the_rank():
    config = {"lora_alpha": 8.0, "alpha_pattern": {"to_q": 2.0}, "use_rslora": False}
    assert kohya_alpha("a.to_k", 4, config, None) == 8.0
    assert kohya_alpha("a.to_q", 4, config, None) == 2.0
    # rsLoRA scales by alpha/sqrt(r): the kohya alpha with the same scale is alpha*sqrt(r)
    assert kohya_alpha("a.to_k", 16, {**config, "use_rslora": True}, None) == pytest.approx(32.0)
    assert kohya_alpha("a.to_k", 4, None, 3.0) == 3.0   # fitad_lora.json when the header has no config
    assert kohya_alpha("a.to_k", 4, None, None) == 4.0  # diffusers' convention without any alpha


def test_lokr_alpha_is_real_where_lycoris_readers_apply_it_and_baked_in_elsewhere():
    g = torch.Generator().manual_seed(0)
    decomposed = {"lokr_w1": torch.randn(4, 4, generator=g), "lokr_w2_a": torch.randn(8, 2, generator=g),
                  "lokr_w2_b": torch.randn(2, 8, generator=g)}
    out = lokr_lycoris_tensors(decomposed, rank=2, alpha=3.0)
    assert float(out["alpha"]) == 3.0 and torch.equal(out["lokr_w1"], decomposed["lokr_w1"])
    full = {"lokr_w1": torch.randn(4, 4, generator=g), "lokr_w2": torch.randn(8, 8, generator=g)}
    out = lokr_lycoris_tensors(full, rank=4, alpha=2.0)
    # readers scale two full factors by 1, so alpha/r is multiplied in; .alpha is still written (LyCORIS' own
    # loader needs the key) and holds the rank, which those readers ignore
    assert torch.allclose(out["lokr_w1"], full["lokr_w1"] * 0.5)
    assert float(out["alpha"]) == 4.0 and out["alpha"].dtype == torch.float32


def test_export_config_validates_choices():
    with pytest.raises(ConfigError, match="export.format"):
        ExportConfig(format="ckpt")
    with pytest.raises(ConfigError, match="export.dtype"):
        ExportConfig(dtype="int8")


# ---------------------------------------------------------------- file contents

def test_kohya_file_keys_alpha_and_metadata(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=2.0, text_encoder=True)
    out = export_kohya(adapter.lora_dir, tmp_path / "sks_style.safetensors")
    tensors, meta = read(out)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert tensors[f"{name}.lora_down.weight"].shape == (4, 32)
    assert tensors[f"{name}.lora_up.weight"].shape == (32, 4)
    assert tensors[f"{name}.alpha"].dim() == 0 and tensors[f"{name}.alpha"].is_floating_point()
    alphas = {float(v) for k, v in tensors.items() if k.endswith(".alpha")}
    assert alphas == {2.0}  # alpha, not the rank (4)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj.") for k in tensors)
    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in tensors)
    source, _ = read(adapter.lora_dir / "pytorch_lora_weights.safetensors")
    assert torch.equal(tensors[f"{name}.lora_down.weight"],
                       source[f"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"])
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == 2.0
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_base_model_version"] == "sd_v1"
    assert meta["ss_output_name"] == "sks_style"
    assert meta["fitad_base_model"] == "tiny-sd15" and meta["fitad_trigger"] == "sks"
    assert meta["ss_sd_model_name"] == "tiny-sd15" and meta["modelspec.trigger_phrase"] == "sks"
    # this manifest records no dataset: no tag frequencies are made up (see test_metadata.py for real ones)
    assert "ss_tag_frequency" not in meta
    assert adapter.lora_dir.joinpath("pytorch_lora_weights.safetensors").is_file()  # native copy kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_float16_export_halves_weights_but_keeps_alpha_exact(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=3.0)
    result = run(ExportConfig(dtype="float16", output_name="named"), adapter.lora_dir, tmp_path / "half.safetensors")
    tensors, meta = read(result.path)
    assert {v.dtype for k, v in tensors.items() if not k.endswith(".alpha")} == {torch.float16}
    assert {v.dtype for k, v in tensors.items() if k.endswith(".alpha")} == {torch.float32}
    assert meta["ss_output_name"] == "named"
    assert (result.rank, result.alpha, result.key_count) == (4, 3.0, len(tensors))
    assert result.module_count * 3 == result.key_count
    assert "rank 4, alpha 3" in result.summary()


def test_default_output_goes_beside_the_lora_dir(make_adapter):
    adapter = make_adapter(family="sd15")
    out = export_kohya(adapter.lora_dir)
    run_dir = adapter.lora_dir.resolve().parent  # training's layout: RUN/lora -> RUN/RUN.safetensors
    assert out == run_dir / f"{run_dir.name}.safetensors"
    other = run_dir / "sks_style"
    adapter.lora_dir.rename(other)
    assert export_kohya(other) == run_dir / "sks_style.safetensors"
    other.rename(adapter.lora_dir)
    assert sorted(p.name for p in adapter.lora_dir.iterdir()) == ["fitad_lora.json", "pytorch_lora_weights.safetensors"]


# ---------------------------------------------------------------- round trips through diffusers

@pytest.mark.parametrize("rank, alpha, text_encoder", [(4, 4.0, False), (4, 2.0, True), (2, 8.0, False)])
def test_sd15_kohya_file_renders_like_the_peft_adapter(make_adapter, fresh_pipeline, tmp_path,
                                                       rank, alpha, text_encoder):
    adapter = make_adapter(family="sd15", rank=rank, alpha=alpha, text_encoder=text_encoder)
    assert max_abs_diff(adapter.reference, adapter.base) > 1e-2  # the adapter does change the image
    if text_encoder:
        assert max_abs_diff(adapter.reference, adapter.without_text_encoder) > 1e-3
    out = export_kohya(adapter.lora_dir, tmp_path / "kohya.safetensors")
    pipe = fresh_pipeline("sd15")
    pipe.load_lora_weights(str(out))
    from .conftest import render

    assert max_abs_diff(render(pipe), adapter.reference) < TOL


def test_flux_file_renders_like_the_peft_adapter(make_adapter, fresh_pipeline, tmp_path):
    from .conftest import render

    adapter = make_adapter(family="flux", rank=4, alpha=2.0, text_encoder=True)
    assert max_abs_diff(adapter.reference, adapter.base) > 1e-2
    assert max_abs_diff(adapter.reference, adapter.without_text_encoder) > 1e-4
    out = export_kohya(adapter.lora_dir, tmp_path / "flux.safetensors")
    tensors, meta = read(out)
    assert all(k.startswith(("transformer.", "text_encoder.text_model.")) for k in tensors)
    assert {float(v) for k, v in tensors.items() if k.endswith(".alpha")} == {2.0}
    assert meta["ss_base_model_version"] == "flux1"
    pipe = fresh_pipeline("flux")
    pipe.load_lora_weights(str(out))
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


def test_diffusers_format_keeps_dora_and_round_trips(make_adapter, fresh_pipeline, tmp_path):
    from .conftest import render

    adapter = make_adapter(family="sd15", adapter_type="dora", rank=4, alpha=8.0, text_encoder=True)
    with pytest.raises(ExportError, match="DoRA.*--format diffusers"):
        export_kohya(adapter.lora_dir, tmp_path / "dora.safetensors")
    assert not (tmp_path / "dora.safetensors").exists()
    out = export_diffusers(adapter.lora_dir, tmp_path / "dora.diffusers.safetensors")
    _, meta = read(out)
    assert meta["fitad_adapter_type"] == "dora" and "lora_adapter_metadata" in meta
    pipe = fresh_pipeline("sd15")
    pipe.load_lora_weights(str(out))
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


def _lycoris_delta(tensors, name, weight_shape):
    """The weight delta a LyCORIS reader (ComfyUI/A1111) computes from a LoKr module's keys."""
    get = lambda suffix: tensors.get(f"{name}.{suffix}")  # noqa: E731
    w1, w2, dim = get("lokr_w1"), get("lokr_w2"), None
    if w1 is None:
        w1, dim = get("lokr_w1_a") @ get("lokr_w1_b"), get("lokr_w1_b").shape[0]
    if w2 is None:
        w2, dim = get("lokr_w2_a") @ get("lokr_w2_b"), get("lokr_w2_b").shape[0]
    alpha = get("alpha")
    scale = float(alpha) / dim if alpha is not None and dim is not None else 1.0
    return torch.kron(w1, w2).reshape(weight_shape) * scale


@pytest.mark.parametrize("rank, extra", [(2, {"decompose_both": True}), (8, {})])
def test_lokr_file_gives_lycoris_readers_the_peft_delta(make_adapter, tmp_path, rank, extra):
    from peft.tuners.lokr.layer import LoKrLayer

    adapter = make_adapter(family="sd15", adapter_type="lokr", rank=rank, alpha=3.0, extra=extra,
                           text_encoder=True, text_extra=extra)
    out = export_kohya(adapter.lora_dir, tmp_path / "lokr.safetensors")
    with pytest.raises(ExportError, match="PEFT folder"):
        export_diffusers(adapter.lora_dir, tmp_path / "lokr.diffusers.safetensors")
    tensors, meta = read(out)
    assert meta["ss_network_module"] == "lycoris.kohya" and json.loads(meta["ss_network_args"])["algo"] == "lokr"
    checked = 0
    for component in ("unet", "text_encoder"):
        for path, layer in getattr(adapter.pipe, component).named_modules():
            if isinstance(layer, LoKrLayer):
                expected = layer.get_delta_weight("default")
                got = _lycoris_delta(tensors, kohya_module_name(component, path), expected.shape)
                assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), path
                checked += 1
    assert checked == len({k.rsplit(".", 1)[0] for k in tensors})


# ---------------------------------------------------------------- bad input

def test_missing_directory_and_weights_are_named(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_kohya(tmp_path / "nope", tmp_path / "x.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="pytorch_lora_weights.safetensors: missing"):
        export_kohya(empty, tmp_path / "x.safetensors")


def test_corrupt_weights_and_bad_manifest_are_named(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15")
    info = adapter.lora_dir / "fitad_lora.json"
    good_info = info.read_text()
    info.write_text(json.dumps({**json.loads(good_info), "family": "sdxl"}))
    with pytest.raises(ExportError, match=r"fitad_lora.json: family = 'sdxl' is unknown"):
        export_kohya(adapter.lora_dir, tmp_path / "x.safetensors")
    info.write_text("{not json")
    with pytest.raises(ExportError, match="fitad_lora.json: not valid JSON"):
        export_kohya(adapter.lora_dir, tmp_path / "x.safetensors")
    info.write_text(good_info)
    weights = adapter.lora_dir / "pytorch_lora_weights.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ExportError, match="pytorch_lora_weights.safetensors: not a readable safetensors"):
        export_kohya(adapter.lora_dir, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x")] == []


def test_family_mismatch_and_output_inside_lora_dir_are_refused(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15")
    info = adapter.lora_dir / "fitad_lora.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "family": "flux"}))
    with pytest.raises(ExportError, match=r"components \['unet'\] do not belong to a flux adapter"):
        export_kohya(adapter.lora_dir, tmp_path / "x.safetensors")
    with pytest.raises(ExportError, match="outside"):
        export_kohya(adapter.lora_dir, adapter.lora_dir / "x.safetensors")


def test_manifest_missing_falls_back_to_keys_and_header(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=2.0)
    (adapter.lora_dir / "fitad_lora.json").unlink()
    tensors, meta = read(export_kohya(adapter.lora_dir, tmp_path / "x.safetensors"))
    assert meta["fitad_family"] == "sd15" and meta["fitad_trigger"] == ""
    assert {float(v) for k, v in tensors.items() if k.endswith(".alpha")} == {2.0}  # from the PEFT header
    assert not math.isnan(float(meta["ss_network_alpha"]))
