"""LoRA / DoRA / LoKr training of SD1.x-architecture models (``fitad train --family sd15``).

The UNet's attention projections get the adapter (optionally the CLIP text encoder's too). The loss
is ε- or v-prediction MSE, per the scheduler config or ``prediction_type``, with Min-SNR-γ weights
and offset noise; the loop, caching, checkpoints and outputs are the shared ones of
:mod:`fitad.train.loop`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from fitad.config import ConfigError
from fitad.generate.clip import clip_hidden_states
from fitad.train import adapters
from fitad.train.config import TEXT_ENCODER_TARGET_MODULES, SDLoraConfig
from fitad.train.losses import compute_snr, diffusion_target, min_snr_weights, offset_noise, weighted_mse
from fitad.train.loop import Cond, TrainResult, train_lora
from fitad.train.runtime import place, weight_dtype


class SDRecipe:
    """SD1.5-family pieces of the training loop."""

    family = "sd15"

    def __init__(self, config: SDLoraConfig) -> None:
        from diffusers import StableDiffusionPipeline

        self.config = config
        self.pipeline_cls = StableDiffusionPipeline
        self.text_trainable = config.text_encoder_lora
        self.prediction_type = config.prediction_type

    # ---- loading
    def load(self, base_path: str, accelerator: Any) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        dtype = weight_dtype(accelerator)
        self.setup(accelerator,
                   tokenizer=CLIPTokenizer.from_pretrained(base_path, subfolder="tokenizer"),
                   text_encoder=CLIPTextModel.from_pretrained(base_path, subfolder="text_encoder", dtype=dtype),
                   vae=AutoencoderKL.from_pretrained(base_path, subfolder="vae", dtype=torch.float32),
                   unet=UNet2DConditionModel.from_pretrained(base_path, subfolder="unet", dtype=dtype),
                   noise_scheduler=DDPMScheduler.from_pretrained(base_path, subfolder="scheduler"))

    def setup(self, accelerator: Any, *, tokenizer: Any, text_encoder: torch.nn.Module, vae: torch.nn.Module,
              unet: torch.nn.Module, noise_scheduler: Any) -> None:
        """Attach adapters and place the loaded (or, in benchmarks, freshly built) components."""
        self.tokenizer, self.text_encoder, self.vae, self.unet = tokenizer, text_encoder, vae, unet
        self.noise_scheduler = noise_scheduler
        cfg = self.config
        self.accelerator = accelerator
        self.device = accelerator.device
        dtype = weight_dtype(accelerator)
        if cfg.prediction_type != "auto":
            self.noise_scheduler.register_to_config(prediction_type=cfg.prediction_type)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"{cfg.SECTION}.prediction_type: the base's scheduler predicts "
                              f"{self.prediction_type!r}; set prediction_type to 'epsilon' or 'v_prediction'")
        if self.text_encoder.config.num_hidden_layers < cfg.clip_skip:
            raise ConfigError(f"{cfg.SECTION}.clip_skip = {cfg.clip_skip} exceeds the text encoder's "
                              f"{self.text_encoder.config.num_hidden_layers} layers")

        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        adapters.attach_adapter(self.unet, cfg, cfg.target_modules)
        if self.text_trainable:
            adapters.attach_adapter(self.text_encoder, cfg, TEXT_ENCODER_TARGET_MODULES)
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if self.text_trainable:  # transformers v5 renamed the method
                enable = getattr(self.text_encoder, "activation_checkpointing_enable", None)
                (enable or self.text_encoder.gradient_checkpointing_enable)()
        # The VAE stays fp32: SD VAEs overflow in fp16 and it only runs once per image when cached.
        place(self.vae, self.device, torch.float32)
        self.vae.eval()
        place(self.text_encoder, self.device, dtype)
        place(self.unet, self.device, dtype)
        self.text_encoder.train(self.text_trainable)
        self.alphas_cumprod = self.noise_scheduler.alphas_cumprod.to(self.device)
        self._unet = self.unet
        self._text_encoder = self.text_encoder

    def trainable_models(self) -> dict[str, torch.nn.Module]:
        models: dict[str, torch.nn.Module] = {"unet": self.unet}
        if self.text_trainable:
            models["text_encoder"] = self.text_encoder
        return models

    def set_prepared(self, models: dict[str, torch.nn.Module]) -> None:
        self._unet = models["unet"]
        self._text_encoder = models.get("text_encoder", self.text_encoder)

    # ---- encoders
    def encoding(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the SD encoders stay on the device

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        return (posterior.mean * self.vae.config.scaling_factor).float()

    def encode_text(self, captions: list[str]) -> Cond:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        with torch.set_grad_enabled(self.text_trainable and torch.is_grad_enabled()):
            return {"encoder_hidden_states": self._clip_embed(ids)}

    def _clip_embed(self, ids: torch.Tensor) -> torch.Tensor:
        """CLIP hidden states with A1111-style clip skip (the same function generation uses)."""
        return clip_hidden_states(self._text_encoder, ids, self.config.clip_skip,
                                  norm_owner=self.accelerator.unwrap_model(self._text_encoder))

    # ---- loss
    def loss(self, latents: torch.Tensor, cond: Cond, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        bsz = latents.shape[0]
        # Drawn on the CPU generator so the numbers do not depend on the device.
        noise = offset_noise(torch.randn(latents.shape, generator=generator), cfg.noise_offset, generator)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,), generator=generator)
        noise, timesteps = noise.to(self.device), timesteps.to(self.device)
        latents = latents.to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        target = diffusion_target(latents, noise, self.alphas_cumprod, timesteps, self.prediction_type)
        hidden = cond["encoder_hidden_states"].to(self.device)
        pred = self._unet(noisy, timesteps, encoder_hidden_states=hidden, return_dict=False)[0]
        weights = None
        if cfg.snr_gamma is not None:
            weights = min_snr_weights(compute_snr(self.alphas_cumprod, timesteps), cfg.snr_gamma,
                                      self.prediction_type)
        return weighted_mse(pred, target, weights)

    # ---- validation
    def render(self, prompts: list[str], conds: list[Cond] | None, seed: int, steps: int,
               guidance: float, resolution: int) -> list:
        from diffusers import DDIMScheduler

        unwrap = self.accelerator.unwrap_model
        pipe = self.pipeline_cls(
            vae=self.vae, text_encoder=unwrap(self.text_encoder), tokenizer=self.tokenizer, unet=unwrap(self.unet),
            scheduler=DDIMScheduler.from_config(self.noise_scheduler.config), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        # Embeddings computed here (not by the pipeline) so validation uses the training clip skip.
        negative = self.encode_text([""])["encoder_hidden_states"]
        images = []
        for i, prompt in enumerate(prompts):
            embeds = (conds[i] if conds is not None else self.encode_text([prompt]))["encoder_hidden_states"]
            generator = torch.Generator(self.device).manual_seed(seed + i)
            images.append(pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, height=resolution,
                               width=resolution, num_inference_steps=steps, guidance_scale=guidance,
                               generator=generator).images[0])
        return images


def train_sd_lora(config: SDLoraConfig, dataset_dir: str | Path, out_dir: str | Path, tracker: Any = None, *,
                  resume: bool = False, show_progress: bool = True, on_step=None) -> TrainResult:
    """Train a LoRA/DoRA/LoKr adapter for an SD1.x model; see :func:`fitad.train.loop.train_lora`.

    Writes ``out_dir/lora/`` (diffusers-native ``pytorch_lora_weights.safetensors`` + ``fitad_lora.json``),
    ``out_dir/checkpoints/``, ``out_dir/validation/``, ``out_dir/metrics.jsonl`` and
    ``out_dir/train_summary.json``.
    """
    if not isinstance(config, SDLoraConfig):
        raise TypeError(f"train_sd_lora needs an SDLoraConfig, got {type(config).__name__}")
    return train_lora(SDRecipe(config), config, dataset_dir, out_dir, tracker, resume=resume,
                      show_progress=show_progress, on_step=on_step)
