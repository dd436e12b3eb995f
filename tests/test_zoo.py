"""The tiny models load through the real from_pretrained classes and render images of the right size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fitad import zoo


def test_tiny_sd15_loads_and_renders(tiny_models_root):
    from diffusers import StableDiffusionPipeline

    path = zoo.ensure_tiny("tiny-sd15", tiny_models_root)
    pipe = StableDiffusionPipeline.from_pretrained(path)
    assert pipe.vae_scale_factor == 8
    assert pipe.text_encoder.config.num_hidden_layers >= 2
    out = pipe("a photo of sks girl", num_inference_steps=2, height=64, width=48, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 64, 48, 3)
    assert np.isfinite(out.images).all()


def test_clip_skip_two_gives_a_different_embedding(tiny_models_root):
    # Clip skip 2 = the penultimate layer's hidden state (then the final layer norm): it must differ from
    # the last layer's output, which needs >= 2 layers. (transformers 5 flattened CLIPTextModel, so the
    # final layer norm sits on the model itself.)
    from transformers import CLIPTextModel

    path = zoo.ensure_tiny("tiny-sd15", tiny_models_root)
    encoder = CLIPTextModel.from_pretrained(path / "text_encoder")
    ids = zoo.tiny_clip_tokenizer()("sks girl", return_tensors="pt").input_ids
    out = encoder(ids, output_hidden_states=True)
    assert len(out.hidden_states) == encoder.config.num_hidden_layers + 1
    penultimate = encoder.final_layer_norm(out.hidden_states[-2])
    assert penultimate.shape == out.last_hidden_state.shape
    assert not torch.allclose(penultimate, out.last_hidden_state)


def test_tiny_inpaint_loads_with_nine_channel_unet(tiny_models_root):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    pipe = StableDiffusionInpaintPipeline.from_pretrained(zoo.ensure_tiny("tiny-sd15-inpaint", tiny_models_root))
    assert pipe.unet.config.in_channels == 9
    image = Image.new("RGB", (64, 64), "white")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = pipe("a product photo", image=image, mask_image=mask, num_inference_steps=2, height=64, width=64,
               output_type="np", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 64, 64, 3)


def test_tiny_flux_loads_and_renders(tiny_models_root):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(zoo.ensure_tiny("tiny-flux", tiny_models_root))
    assert pipe.vae.config.latent_channels == 16
    assert pipe.transformer.config.guidance_embeds
    out = pipe("a photo of sks girl", num_inference_steps=2, height=64, width=64, guidance_scale=3.5,
               max_sequence_length=32, output_type="np", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 64, 64, 3)
    assert np.isfinite(out.images).all()


def test_tiny_blip_captions(tiny_models_root):
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    path = zoo.ensure_tiny("tiny-blip", tiny_models_root)
    processor = BlipProcessor.from_pretrained(path)
    model = BlipForConditionalGeneration.from_pretrained(path)
    inputs = processor(images=Image.new("RGB", (40, 30), "red"), return_tensors="pt")
    ids = model.generate(**inputs, max_length=10, num_beams=2)
    text = processor.decode(ids[0], skip_special_tokens=True)
    assert isinstance(text, str)
    assert ids.shape[1] <= 10


def test_tiny_clip_scores_image_text(tiny_models_root):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    path = zoo.ensure_tiny("tiny-clip", tiny_models_root)
    model = CLIPModel.from_pretrained(path)
    processor = CLIPProcessor.from_pretrained(path)
    inputs = processor(text=["a red product", "a blue sky"], images=Image.new("RGB", (64, 64), "red"),
                       return_tensors="pt", padding=True)
    logits = model(**inputs).logits_per_image
    assert logits.shape == (1, 2)


def test_build_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = zoo.build_tiny("tiny-sd15", tmp_path / "a")
    b = zoo.build_tiny("tiny-sd15", tmp_path / "b")
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        wa, wb = load_file(a / part), load_file(b / part)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    index = json.loads((a / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"


def test_resolve_model(tiny_models_root, tmp_path):
    assert zoo.resolve_model("tiny-sd15", tiny_models_root) == str(tiny_models_root / "tiny-sd15")
    assert zoo.resolve_model("stablediffusionapi/anything-v5") == "stablediffusionapi/anything-v5"
    assert zoo.resolve_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.resolve_model(str(tmp_path / "missing-model"))
    with pytest.raises(ValueError, match="unknown tiny model"):
        zoo.build_tiny("tiny-nope", tmp_path / "x")


def test_tiny_tokenizer_keeps_words_whole():
    tok = zoo.tiny_clip_tokenizer()
    tokens = tok.convert_ids_to_tokens(tok("a photo of sks girl").input_ids)
    assert tokens[0] == "<|startoftext|>" and tokens[-1] == "<|endoftext|>"
    assert "photo</w>" in tokens and "girl</w>" in tokens


def test_stale_or_partial_cache_is_rebuilt(tmp_path):
    built = zoo.ensure_tiny("tiny-clip", tmp_path)
    marker = built / ".fitad-complete"
    stamp = marker.stat().st_mtime_ns
    assert zoo.ensure_tiny("tiny-clip", tmp_path) == built and marker.stat().st_mtime_ns == stamp  # reused
    marker.write_text(json.dumps({"name": "tiny-clip", "seed": 0, "recipe": zoo.RECIPE_VERSION - 1}))
    zoo.ensure_tiny("tiny-clip", tmp_path)
    assert json.loads(marker.read_text())["recipe"] == zoo.RECIPE_VERSION  # older recipe: rebuilt
    marker.unlink()  # an interrupted build leaves no marker
    zoo.ensure_tiny("tiny-clip", tmp_path)
    assert marker.exists()
