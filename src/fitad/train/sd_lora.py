"""LoRA / DoRA / LoKr training of SD1.x-architecture models (``fitad train --family sd15``).

The UNet's attention projections get the adapter (optionally the CLIP text encoder's too). The loss
is ε- or v-prediction MSE, per the scheduler config or ``prediction_type``, with Min-SNR-γ weights
and offset noise; the loop, caching, checkpoints and outputs are the shared ones of
:mod:`fitad.train.loop`.

Captions longer than CLIP's 77-token window are cut, and the run reports which ones
(:meth:`SDRecipe.caption_overflow`), unless ``long_prompts`` is set: then each caption is encoded
A1111/kohya-style as 75-token chunks, each in its own ``BOS + chunk + EOS`` window of 77 tokens, and
the chunk embeddings are concatenated along the sequence axis (77·n tokens). Captions of one batch
are padded with empty chunks (the encoding of ``""``) to the longest one, and validation renders
pad the negative prompt the same way.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch

from fitad.config import ConfigError
from fitad.generate.clip import clip_hidden_states, count_tokens
from fitad.train import adapters
from fitad.train.config import TEXT_ENCODER_TARGET_MODULES, SDLoraConfig
from fitad.train.losses import compute_snr, diffusion_target, min_snr_weights, offset_noise, weighted_mse
from fitad.train.loop import Cond, TrainResult, train_lora
from fitad.train.runtime import place, weight_dtype


class SDRecipe:
    """SD1.5-family pieces of the training loop."""

    family = "sd15"
    loss_version = 1  # bump when a change to the loss makes older checkpoints resume into another run

    def __init__(self, config: SDLoraConfig) -> None:
        from diffusers import StableDiffusionPipeline

        self.config = config
        self.pipeline_cls = StableDiffusionPipeline
        self.text_trainable = config.text_encoder_lora
        self.prediction_type = config.prediction_type
        self.long_prompts = config.long_prompts
        self._empty_chunk: torch.Tensor | None = None

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
        if cfg.gradient_checkpointing is True:  # "auto" is decided by the loop once the models are placed
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
        if self.long_prompts:
            ids, chunks = self._chunked_ids(captions)
        else:
            window = self.tokenizer.model_max_length
            ids = self.tokenizer(captions, padding="max_length", max_length=window, truncation=True,
                                 return_tensors="pt").input_ids
            chunks = 1
        with torch.set_grad_enabled(self.text_trainable and torch.is_grad_enabled()):
            hidden = self._clip_embed(ids.to(self.device))
        # (captions * chunks, 77, dim) -> (captions, chunks * 77, dim): chunk k of caption i is row i*chunks + k
        return {"encoder_hidden_states": hidden.reshape(len(captions), chunks * hidden.shape[1], hidden.shape[2])}

    def _chunked_ids(self, captions: list[str]) -> tuple[torch.Tensor, int]:
        """Token windows of ``long_prompts``: per caption ``n`` rows of BOS + up to 75 tokens + EOS + padding."""
        tok = self.tokenizer
        window = tok.model_max_length
        body = window - 2
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        pieces = [tok(c, add_special_tokens=False, truncation=False, verbose=False).input_ids for c in captions]
        chunks = max([1] + [math.ceil(len(p) / body) for p in pieces])
        rows = []
        for piece in pieces:
            for k in range(chunks):
                part = piece[k * body:(k + 1) * body]
                rows.append([tok.bos_token_id, *part, tok.eos_token_id] + [pad] * (body - len(part)))
        return torch.tensor(rows, dtype=torch.long), chunks

    def _pad_chunks(self, hidden: torch.Tensor, length: int) -> torch.Tensor:
        """Append empty chunks (the encoding of "") to ``hidden`` (B, L, D) up to ``length`` tokens."""
        if hidden.shape[1] == length:
            return hidden
        empty = self._empty_chunk
        if empty is None:
            empty = self.encode_text([""])["encoder_hidden_states"]
            if not self.text_trainable:  # a frozen encoder: the same every time
                self._empty_chunk = empty = empty.detach()
        extra = (length - hidden.shape[1]) // empty.shape[1]
        empty = empty.to(hidden.device, hidden.dtype)
        return torch.cat([hidden, empty.expand(hidden.shape[0], -1, -1).repeat(1, extra, 1)], dim=1)

    def collate_text(self, conds: list[Cond]) -> Cond:
        """Batch cached single-caption conditionings; with ``long_prompts`` pad to the longest first."""
        hidden = [c["encoder_hidden_states"] for c in conds]
        length = max(h.shape[1] for h in hidden)
        return {"encoder_hidden_states": torch.cat([self._pad_chunks(h, length) for h in hidden], dim=0)}

    @property
    def text_window(self) -> int:
        return self.tokenizer.model_max_length

    def caption_overflow(self, caption: str) -> tuple[int, str]:
        """Tokens of ``caption`` (BOS/EOS included) and the text past the 77-token window ("" if it fits)."""
        tokens = count_tokens(self.tokenizer, caption)
        if tokens <= self.text_window:
            return tokens, ""
        body = self.tokenizer(caption, add_special_tokens=False, truncation=False, verbose=False).input_ids
        return tokens, self.tokenizer.decode(body[self.text_window - 2:]).strip()

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
        # drawn on the CPU: copy without blocking the host (no per-step sync on CUDA)
        noise = noise.to(self.device, non_blocking=True)
        timesteps = timesteps.to(self.device, non_blocking=True)
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
        # Embeddings computed here (not by the pipeline) so validation uses the training clip skip and,
        # with long_prompts, the chunked encoding (the negative padded with empty chunks to the prompt's length).
        negative = self.encode_text([""])["encoder_hidden_states"]
        images = []
        for i, prompt in enumerate(prompts):
            embeds = (conds[i] if conds is not None else self.encode_text([prompt]))["encoder_hidden_states"]
            generator = torch.Generator(self.device).manual_seed(seed + i)
            images.append(pipe(prompt_embeds=embeds,
                               negative_prompt_embeds=self._pad_chunks(negative, embeds.shape[1]),
                               height=resolution, width=resolution, num_inference_steps=steps,
                               guidance_scale=guidance, generator=generator).images[0])
        return images


def train_sd_lora(config: SDLoraConfig, dataset_dir: str | Path, out_dir: str | Path, tracker: Any = None, *,
                  resume: bool = False, extend_steps: bool = False, show_progress: bool = True,
                  on_step=None) -> TrainResult:
    """Train a LoRA/DoRA/LoKr adapter for an SD1.x model; see :func:`fitad.train.loop.train_lora`.

    Writes ``out_dir/lora/`` (diffusers-native ``pytorch_lora_weights.safetensors`` + ``fitad_lora.json``),
    ``out_dir/checkpoints/``, ``out_dir/validation/``, ``out_dir/metrics.jsonl`` and
    ``out_dir/train_summary.json``. ``resume`` refuses changed settings; ``extend_steps`` lets it train
    to more steps than the checkpoint's run (the LR schedule is recomputed for the new total).
    """
    if not isinstance(config, SDLoraConfig):
        raise TypeError(f"train_sd_lora needs an SDLoraConfig, got {type(config).__name__}")
    return train_lora(SDRecipe(config), config, dataset_dir, out_dir, tracker, resume=resume,
                      extend_steps=extend_steps, show_progress=show_progress, on_step=on_step)
