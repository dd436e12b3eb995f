"""FLUX LoRA training on tiny-flux (CPU): loss wiring, end to end, the adapter loads and renders."""

from __future__ import annotations

import json

import pytest
import torch

from fitad.config import ConfigError
from fitad.train.config import FluxLoraConfig
from fitad.train.flux_lora import FluxRecipe, train_flux_lora

FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=0,
            max_sequence_length=16)


def _config(base, **overrides):
    return FluxLoraConfig(base_model=base, **{**FAST, **overrides})


def test_recipe_loss_matches_flow_matching_by_hand(tiny_flux):
    from accelerate import Accelerator
    from diffusers import FluxPipeline

    # timestep_shift is checked by hand in test_flux_shift.py; here the raw sigmas keep the algebra short
    cfg = _config(tiny_flux, timestep_sampling="sigmoid", sigmoid_scale=2.0, loss_weighting="sigma_sqrt",
                  guidance_scale=3.0, timestep_shift="none")
    recipe = FluxRecipe(cfg)
    recipe.load(tiny_flux, Accelerator(cpu=True))
    assert recipe.guidance_embeds  # tiny-flux is guidance-distilled like FLUX.1-dev
    latents = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = recipe.encode_text(["fitadtok girl", "a picture"])
    assert cond["prompt_embeds"].shape[:2] == (2, 16) and cond["pooled_prompt_embeds"].shape[0] == 2
    got = recipe.loss(latents, cond, torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)
    noise = torch.randn(latents.shape, generator=g)
    sigma = torch.sigmoid(2.0 * torch.randn(2, generator=g))
    noisy = (1 - sigma.view(-1, 1, 1, 1)) * latents + sigma.view(-1, 1, 1, 1) * noise
    with torch.no_grad():
        pred = recipe.transformer(
            hidden_states=FluxPipeline._pack_latents(noisy, 2, 16, 8, 8), timestep=sigma,
            guidance=torch.full((2,), 3.0), pooled_projections=cond["pooled_prompt_embeds"],
            encoder_hidden_states=cond["prompt_embeds"], txt_ids=torch.zeros(16, 3),
            img_ids=FluxPipeline._prepare_latent_image_ids(2, 4, 4, "cpu", torch.float32), return_dict=False)[0]
    pred = FluxPipeline._unpack_latents(pred, 64, 64, 8)
    per_sample = ((pred - (noise - latents)) ** 2).mean(dim=(1, 2, 3))
    # sigma_sqrt: 1/sigma^2 (sigma floored at 0.1), divided by its mean under sigma = sigmoid(2 z), z ~ N(0, 1)
    z = torch.linspace(-12, 12, 480_001, dtype=torch.float64)
    density = torch.exp(-z**2 / 2) / (2 * torch.pi) ** 0.5
    mean_weight = torch.trapezoid(torch.sigmoid(2 * z).clamp(min=0.1) ** -2 * density, z).item()
    assert recipe.mean_weight(16) == pytest.approx(mean_weight, rel=1e-3)
    weights = sigma.clamp(min=0.1) ** -2 / recipe.mean_weight(16)
    assert got.item() == pytest.approx((per_sample * weights).mean().item(), rel=1e-5)


def test_training_end_to_end_and_the_pipeline_renders_with_the_adapter(tiny_flux, dataset_dir, tmp_path):
    from diffusers import FluxPipeline

    out = tmp_path / "out"
    cfg = _config(tiny_flux, alpha=8, learning_rate=1e-2, validation_every=2, validation_inference_steps=2)
    result = train_flux_lora(cfg, dataset_dir, out, show_progress=False)
    assert sorted(result.losses) == [1, 2] and all(v == v for v in result.losses.values())
    manifest = json.loads((out / "lora" / "fitad_lora.json").read_text())
    assert manifest["family"] == "flux" and manifest["prediction_type"] == "flow"
    assert (manifest["rank"], manifest["alpha"], manifest["steps"]) == (4, 8.0, 2)
    assert (out / "validation" / "step_000002_0.png").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["status"] == "completed" and summary["family"] == "flux"

    pipe = FluxPipeline.from_pretrained(tiny_flux)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="fitadtok girl", height=64, width=64, num_inference_steps=2, max_sequence_length=16,
                  output_type="np")
    base = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(str(out / "lora"))
    peft_config = next(iter(pipe.transformer.peft_config.values()))
    assert (peft_config.r, peft_config.lora_alpha) == (4, 8)
    tuned = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    assert tuned.shape == (1, 64, 64, 3) and abs(tuned - base).max() > 0


def test_uncached_flux_run_matches_cached(tiny_flux, dataset_dir, tmp_path):
    cached = train_flux_lora(_config(tiny_flux, steps=1), dataset_dir, tmp_path / "a", show_progress=False)
    uncached = train_flux_lora(_config(tiny_flux, steps=1, cache_latents=False, cache_text_embeddings=False),
                               dataset_dir, tmp_path / "b", show_progress=False)
    assert cached.losses[1] == pytest.approx(uncached.losses[1], rel=1e-4)


def test_quantized_base_is_refused_on_cpu_before_loading(tiny_flux, dataset_dir, tmp_path, monkeypatch):
    from fitad.train import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    monkeypatch.setattr(FluxRecipe, "load", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ConfigError, match=r"train_flux\.quantize_base = 'nf4'"):
        train_flux_lora(_config(tiny_flux, quantize_base="nf4"), dataset_dir, tmp_path, show_progress=False)


def test_offloaded_encoders_visit_the_device_once_per_caching_pass():
    # Offloading moves the frozen encoders to the device for each use; inside encoding() a loop of
    # encode calls must not move them back and forth per call (T5-XXL is ~9.5 GB).
    recipe = FluxRecipe.__new__(FluxRecipe)
    recipe.device, recipe._encoder_home, recipe._visiting = torch.device("cpu", 0), torch.device("cpu"), set()
    moves = []

    class Encoder(torch.nn.Linear):
        def to(self, *args, **kwargs):
            moves.append((self.tag, str(args[0])))
            return self

    vae, te, te2 = Encoder(2, 2), Encoder(2, 2), Encoder(2, 2)
    vae.tag, te.tag, te2.tag = "vae", "te", "te2"
    recipe.vae = vae
    recipe.pipe = type("Pipe", (), {"text_encoder": te, "text_encoder_2": te2})()
    with recipe.encoding():
        for _ in range(3):
            with recipe._on_device(recipe.vae):
                pass
            with recipe._on_device(te, te2):
                pass
    assert sorted(moves) == sorted([(m, "cpu:0") for m in ("vae", "te", "te2")] +
                                   [(m, "cpu") for m in ("vae", "te", "te2")])
    moves.clear()
    with recipe._on_device(te):  # outside encoding(): one visit per use
        pass
    assert moves == [("te", "cpu:0"), ("te", "cpu")]
