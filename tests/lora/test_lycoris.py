"""Exported LoKr files read by an independent reader: the ``lycoris`` package (PyPI ``lycoris-lora``).

The PEFT adapter is the reference: LyCORIS must rebuild the same weight delta for every module and, applied to a
fresh pipeline, render the same image.
"""

from __future__ import annotations

import pytest
import torch

from fitad.lora.export import export_kohya, kohya_module_name

from .conftest import max_abs_diff, render

lycoris = pytest.importorskip(
    "lycoris", reason="lycoris-lora is not installed (pip install lycoris-lora, part of the dev extra): "
                      "the independent LoKr reader these tests use")

TOL = 1e-4
# PEFT LoKr layouts: both factors rank-decomposed; both full matrices (rank >= half the factor size);
# the default (left factor full, right factor decomposed).
LAYOUTS = [(2, {"decompose_both": True}), (8, {}), (2, {})]


class OriginalClipLayout(torch.nn.Module):
    """``text_model.<...>`` module names, as kohya/A1111's CLIP has them (transformers 5 flattened CLIPTextModel)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_model = text_encoder


def _lycoris_delta(module, shape):
    """LyCORIS' weight delta of one module: ``get_weight`` is ``scale * kron(w1, w2)``, what its forward adds.

    (lycoris-lora 4.1.3's ``get_diff_weight`` multiplies that by the scale a second time, so it is not used.)
    """
    with torch.no_grad():
        return module.get_weight(shape)


def _peft_deltas(pipe, components):
    from peft.tuners.lokr.layer import LoKrLayer

    for component in components:
        for path, layer in getattr(pipe, component).named_modules():
            if isinstance(layer, LoKrLayer):
                yield component, path, layer.get_delta_weight("default")


@pytest.mark.parametrize("rank, extra", LAYOUTS)
def test_sd15_lokr_file_loads_in_lycoris_like_the_peft_adapter(make_adapter, fresh_pipeline, tmp_path, monkeypatch,
                                                               rank, extra):
    from lycoris.kohya import LycorisNetworkKohya, create_network_from_weights

    adapter = make_adapter(family="sd15", adapter_type="lokr", rank=rank, alpha=3.0, text_encoder=True,
                           extra=extra, text_extra=extra)
    assert max_abs_diff(adapter.reference, adapter.base) > 1e-2
    out = export_kohya(adapter.lora_dir, tmp_path / "lokr.safetensors")

    # lycoris-lora 4.1.3 first builds a throwaway training network whose targets reach diffusers' time embedding
    # twice (the TimestepEmbedding class and the name time_embedding.linear_1) and then asserts on the duplicate.
    # That network is discarded; reading the file does not use those targets, so the class is left out.
    targets = [m for m in LycorisNetworkKohya.UNET_TARGET_REPLACE_MODULE if m != "TimestepEmbedding"]
    monkeypatch.setattr(LycorisNetworkKohya, "UNET_TARGET_REPLACE_MODULE", targets)
    pipe = fresh_pipeline("sd15")
    text_encoder = OriginalClipLayout(pipe.text_encoder)
    network, weights = create_network_from_weights(1.0, str(out), None, text_encoder, pipe.unet)
    modules = {m.lora_name: m for m in network.unet_loras + network.text_encoder_loras}
    assert set(modules) == {key.split(".")[0] for key in weights}  # every module of the file found its layer
    assert network.text_encoder_loras and network.unet_loras

    checked = 0
    for component, path, expected in _peft_deltas(adapter.pipe, ("unet", "text_encoder")):
        got = _lycoris_delta(modules[kohya_module_name(component, path)], expected.shape)
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), path
        checked += 1
    assert checked == len(modules)

    network.apply_to(text_encoder, pipe.unet, True, True)
    assert max_abs_diff(render(pipe), adapter.reference) < TOL


@pytest.mark.parametrize("rank, extra", LAYOUTS[:2])
def test_flux_lokr_tensors_load_in_lycoris_like_the_peft_adapter(make_adapter, fresh_pipeline, tmp_path, rank, extra):
    """FLUX files use diffusers module names (``transformer.<path>``, what ComfyUI maps for FLUX); lycoris' kohya
    loader knows only kohya's FLUX names, so the file's tensors are handed to its generic loader under its own
    ``lycoris_<path>`` names: the factors and ``.alpha`` are read by LyCORIS exactly as written."""
    from lycoris import create_lycoris_from_weights
    from safetensors.torch import load_file

    adapter = make_adapter(family="flux", adapter_type="lokr", rank=rank, alpha=3.0, text_encoder=True,
                           extra=extra, text_extra=extra)
    out = export_kohya(adapter.lora_dir, tmp_path / "lokr.safetensors")
    tensors = load_file(str(out))
    pipe = fresh_pipeline("flux")
    networks = {}
    for component, prefix in (("transformer", "transformer."), ("text_encoder", "text_encoder.text_model.")):
        renamed = {}
        for key, tensor in tensors.items():
            if key.startswith(prefix):
                path, _, suffix = key.removeprefix(prefix).rpartition(".")
                renamed[f"lycoris_{path.replace('.', '_')}.{suffix}"] = tensor
        network, _ = create_lycoris_from_weights(1.0, "", getattr(pipe, component), weights_sd=renamed)
        assert len(network.loras) == len({key.split(".")[0] for key in renamed}) > 0
        networks[component] = network
    for component, path, expected in _peft_deltas(adapter.pipe, ("transformer", "text_encoder")):
        module = next(m for m in networks[component].loras if m.lora_name == f"lycoris_{path.replace('.', '_')}")
        got = _lycoris_delta(module, expected.shape)
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), path
    for network in networks.values():
        network.apply_to()
    assert max_abs_diff(render(pipe), adapter.reference) < TOL
