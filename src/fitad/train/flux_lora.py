"""LoRA / DoRA / LoKr training of FLUX transformers (``fitad train --family flux``).

Rectified flow: ``x_t = (1 − σ)·x + σ·noise``, the transformer predicts ``noise − x`` from the
packed 2×2 latent patches (the packing of diffusers' FluxPipeline), with σ drawn by
``timestep_sampling``, then moved by the base scheduler's timestep shift (``timestep_shift: auto``:
FLUX.1's resolution-dependent shift, the noise levels the model samples at) and an optional
``sigma_sqrt`` loss weight normalised to average 1. Guidance-distilled bases
(``guidance_embeds`` in the transformer config, e.g. FLUX.1-dev) get ``guidance_scale`` fed to their
guidance embedding.

Memory for 16–24 GB cards: gradient checkpointing, cached text embeddings, an NF4/8-bit base via
bitsandbytes (CUDA only) and ``offload_encoders``: the frozen CLIP/T5 encoders and the VAE visit
the GPU only while the cache is built (and the VAE while validation images decode).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch

from fitad.train import adapters
from fitad.train.config import FluxLoraConfig
from fitad.train.losses import (flow_interpolate, flow_loss_weights, flow_target, mean_flow_weight,
                                sample_flow_sigmas, shift_flow_sigmas, weighted_mse)
from fitad.train.loop import Cond, TrainResult, train_lora
from fitad.train.runtime import place, weight_dtype


def _quantization_config(kind: str, compute_dtype: torch.dtype):
    from diffusers import BitsAndBytesConfig

    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


class FluxRecipe:
    """FLUX pieces of the training loop."""

    family = "flux"
    loss_version = 2  # 2: timestep shift and normalised sigma_sqrt weights (version-1 checkpoints do not resume)
    text_trainable = False
    prediction_type = "flow"

    def __init__(self, config: FluxLoraConfig) -> None:
        from diffusers import FluxPipeline

        self.config = config
        self.pipeline_cls = FluxPipeline

    # ---- loading
    def load(self, base_path: str, accelerator: Any) -> None:
        from diffusers import FluxPipeline, FluxTransformer2DModel

        cfg = self.config
        self.accelerator = accelerator
        self.device = accelerator.device
        self.dtype = weight_dtype(accelerator)
        extra: dict[str, Any] = {}
        if cfg.quantize_base != "none":
            from peft import prepare_model_for_kbit_training

            transformer = FluxTransformer2DModel.from_pretrained(
                base_path, subfolder="transformer", dtype=self.dtype,
                quantization_config=_quantization_config(cfg.quantize_base, self.dtype))
            extra["transformer"] = prepare_model_for_kbit_training(transformer, use_gradient_checkpointing=False)
        self.pipe = FluxPipeline.from_pretrained(base_path, dtype=self.dtype, **extra)
        self.pipe.set_progress_bar_config(disable=True)
        self.transformer = self.pipe.transformer
        self.vae = self.pipe.vae
        self.vae.requires_grad_(False)
        place(self.vae, self.vae.device, torch.float32)  # latents are encoded/decoded in fp32 for fidelity
        self.vae.eval()
        for encoder in (self.pipe.text_encoder, self.pipe.text_encoder_2):
            encoder.requires_grad_(False).eval()
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.guidance_embeds = bool(self.transformer.config.guidance_embeds)

        adapters.attach_adapter(self.transformer, cfg, cfg.target_modules)
        if cfg.gradient_checkpointing is True:  # "auto" is settled by the loop (runtime.resolve_gradient_checkpointing)
            self.transformer.enable_gradient_checkpointing()
        if cfg.quantize_base == "none":
            place(self.transformer, self.device, self.dtype)
        self.transformer.train()
        # With offloading the frozen parts wait on the CPU and visit the device only when used.
        self._encoder_home = torch.device("cpu") if cfg.offload_encoders else self.device
        for module in (self.pipe.text_encoder, self.pipe.text_encoder_2, self.vae):
            module.to(self._encoder_home)
        self._visiting: set[int] = set()  # ids of modules an enclosing _on_device already moved
        self._transformer = self.transformer
        self._img_ids: dict[tuple[int, int], torch.Tensor] = {}
        self._mean_weights: dict[int, float] = {}

    @contextlib.contextmanager
    def _on_device(self, *modules: torch.nn.Module) -> Iterator[None]:
        """Run with ``modules`` on the training device, then send them back home (offloading).

        Nests: modules an enclosing call already brought over stay until that call ends, so a loop
        of encode calls inside :meth:`encoding` moves the encoders once, not once per call.
        """
        if self._encoder_home == self.device:
            yield
            return
        moving = [m for m in modules if id(m) not in self._visiting]
        for module in moving:
            module.to(self.device)
            self._visiting.add(id(module))
        try:
            yield
        finally:
            for module in moving:
                module.to(self._encoder_home)
                self._visiting.discard(id(module))
            if moving and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def encoding(self) -> contextlib.AbstractContextManager:
        return self._on_device(self.vae, self.pipe.text_encoder, self.pipe.text_encoder_2)

    def trainable_models(self) -> dict[str, torch.nn.Module]:
        return {"transformer": self.transformer}

    def set_prepared(self, models: dict[str, torch.nn.Module]) -> None:
        self._transformer = models["transformer"]

    # ---- encoders
    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._on_device(self.vae):
            posterior = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
            latents = (posterior.mean - self.vae.config.shift_factor) * self.vae.config.scaling_factor
        return latents.float()

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> Cond:
        with self._on_device(self.pipe.text_encoder, self.pipe.text_encoder_2):
            prompt_embeds, pooled, _ = self.pipe.encode_prompt(
                prompt=captions, prompt_2=None, device=self.device,
                max_sequence_length=self.config.max_sequence_length)
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    # ---- loss
    def shift(self, sigmas: torch.Tensor, image_seq_len: int) -> torch.Tensor:
        """``timestep_shift``: the base scheduler's shift (``auto``) or none."""
        if self.config.timestep_shift == "none":
            return sigmas
        return shift_flow_sigmas(sigmas, self.pipe.scheduler.config, image_seq_len)

    def mean_weight(self, image_seq_len: int) -> float:
        """Normaliser of the loss weights for this image size (the shift depends on it); cached."""
        if image_seq_len not in self._mean_weights:
            cfg = self.config
            self._mean_weights[image_seq_len] = mean_flow_weight(
                cfg.loss_weighting, cfg.timestep_sampling, shift=lambda s: self.shift(s, image_seq_len),
                logit_mean=cfg.logit_mean, logit_std=cfg.logit_std, sigmoid_scale=cfg.sigmoid_scale)
        return self._mean_weights[image_seq_len]

    def image_ids(self, height: int, width: int) -> torch.Tensor:
        """Position ids of the packed latent tokens, built once per size (no host→device copy per step)."""
        key = (height, width)
        if key not in self._img_ids:
            self._img_ids[key] = self.pipeline_cls._prepare_latent_image_ids(1, height // 2, width // 2,
                                                                             self.device, self.dtype)
        return self._img_ids[key]

    def loss(self, latents: torch.Tensor, cond: Cond, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        bsz, channels, height, width = latents.shape
        image_seq_len = (height // 2) * (width // 2)  # packed 2x2 patches, as FluxPipeline counts them
        # Drawn on the CPU generator (device-independent numbers), shifted and weighted on the CPU,
        # then copied without blocking: no host sync per step.
        noise = torch.randn(latents.shape, generator=generator)
        sigmas = sample_flow_sigmas(cfg.timestep_sampling, bsz, generator, logit_mean=cfg.logit_mean,
                                    logit_std=cfg.logit_std, sigmoid_scale=cfg.sigmoid_scale)
        sigmas = self.shift(sigmas, image_seq_len)
        weights = flow_loss_weights(cfg.loss_weighting, sigmas, self.mean_weight(image_seq_len))
        latents = latents.to(self.device, non_blocking=True)
        noise, sigmas, weights = (t.to(self.device, non_blocking=True) for t in (noise, sigmas, weights))
        noisy = flow_interpolate(latents, noise, sigmas)
        packed = self.pipeline_cls._pack_latents(noisy, bsz, channels, height, width)
        img_ids = self.image_ids(height, width)
        prompt_embeds = cond["prompt_embeds"].to(self.device, self.dtype)
        text_ids = torch.zeros(prompt_embeds.shape[1], 3, device=self.device, dtype=self.dtype)
        guidance = (torch.full((bsz,), cfg.guidance_scale, device=self.device, dtype=torch.float32)
                    if self.guidance_embeds else None)
        pred = self._transformer(
            hidden_states=packed.to(self.dtype), timestep=sigmas.to(self.dtype), guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(self.device, self.dtype),
            encoder_hidden_states=prompt_embeds, txt_ids=text_ids, img_ids=img_ids, return_dict=False)[0]
        pred = self.pipeline_cls._unpack_latents(pred, height * self.vae_scale_factor, width * self.vae_scale_factor,
                                                 self.vae_scale_factor)
        return weighted_mse(pred, flow_target(latents, noise), weights)

    # ---- validation
    def render(self, prompts: list[str], conds: list[Cond] | None, seed: int, steps: int,
               guidance: float, resolution: int) -> list:
        if conds is None:
            conds = [self.encode_text([p]) for p in prompts]
        # Text encoders left out: the prompts arrive as embeddings, so they can stay offloaded.
        pipe = self.pipeline_cls(scheduler=self.pipe.scheduler, vae=self.vae, text_encoder=None, tokenizer=None,
                                 text_encoder_2=None, tokenizer_2=None,
                                 transformer=self.accelerator.unwrap_model(self.transformer))
        pipe.set_progress_bar_config(disable=True)
        images = []
        with self._on_device(self.vae):
            for i, cond in enumerate(conds):
                generator = torch.Generator(self.device).manual_seed(seed + i)
                images.append(pipe(prompt_embeds=cond["prompt_embeds"].to(self.device, self.dtype),
                                   pooled_prompt_embeds=cond["pooled_prompt_embeds"].to(self.device, self.dtype),
                                   height=resolution, width=resolution, num_inference_steps=steps,
                                   guidance_scale=guidance, generator=generator).images[0])
        return images


def train_flux_lora(config: FluxLoraConfig, dataset_dir: str | Path, out_dir: str | Path, tracker: Any = None, *,
                    resume: bool = False, extend_steps: bool = False, show_progress: bool = True,
                    on_step=None) -> TrainResult:
    """Train a LoRA/DoRA/LoKr adapter for a FLUX model; see :func:`fitad.train.loop.train_lora`.

    Writes ``out_dir/lora/`` (``pytorch_lora_weights.safetensors`` loadable by
    ``FluxPipeline.load_lora_weights`` + ``fitad_lora.json``) and the shared checkpoint, validation,
    metrics and summary outputs. ``resume`` refuses changed settings; ``extend_steps`` lets a resumed run
    train to a larger ``steps`` (the LR schedule is recomputed for the new total).
    """
    if not isinstance(config, FluxLoraConfig):
        raise TypeError(f"train_flux_lora needs a FluxLoraConfig, got {type(config).__name__}")
    return train_lora(FluxRecipe(config), config, dataset_dir, out_dir, tracker, resume=resume,
                      extend_steps=extend_steps, show_progress=show_progress, on_step=on_step)
