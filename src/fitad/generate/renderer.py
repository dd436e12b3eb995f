"""The renderer: a base diffusion pipeline loaded once, LoRAs swapped per request, one generation at a time.

``Renderer(config)`` loads the SD1.5-family or FLUX pipeline named by ``config.base_model`` on first use and
keeps it warm. Every call (``txt2img``, ``inpaint``, ``img2img``) takes a seed, an optional LoRA reference and
scale, and an optional progress callback, and returns the image with what was used and how long each part took.

Quality settings carried over from the product's seed code:

* **clip skip** (SD1.5 family, default 2) through :func:`fitad.generate.clip.clip_hidden_states`, the function
  training uses, so validation images and served images see the same conditioning;
* **VAE in float32**: the pipelines stop at latents and the renderer decodes them itself with a float32 VAE
  (a float32 copy on CUDA where the rest runs in half precision: half-precision SD VAEs overflow into
  "fried" images); on the CPU everything is float32 and the pipeline's own VAE is used;
* **reproducible seeds**: noise comes from a CPU ``torch.Generator`` seeded per request, so the same request
  gives the same image whatever ran before it (and the same starting noise on any device).

Diffusers pipelines are not thread-safe (their schedulers keep per-call state): every public call holds one
lock, so concurrent callers are served one after the other.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fitad.generate.adapters import Activation, AdapterPool
from fitad.generate.lora_source import AdapterSource, resolve_adapter
from fitad.generate.clip import clip_hidden_states, count_tokens, tokenize
from fitad.generate.config import RenderConfig
from fitad.lora.load import LoraLoadError


class RenderError(ValueError):
    """A render request cannot be served as asked; the message names the argument."""


@dataclasses.dataclass
class Progress:
    """One denoising step done: ``step`` of ``total`` in ``stage``, ``elapsed`` seconds since the call began."""

    stage: str
    step: int
    total: int
    elapsed: float


ProgressFn = Callable[[Progress], None]


@dataclasses.dataclass
class RenderResult:
    image: np.ndarray                       # H x W x 3 uint8
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    prompt: str
    negative_prompt: str
    base_model: str
    family: str
    pipeline: str
    lora: dict[str, Any] | None
    timings: dict[str, float]

    def metadata(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": self.steps, "guidance": self.guidance, "width": self.width,
                "height": self.height, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "base_model": self.base_model, "family": self.family, "pipeline": self.pipeline,
                "lora": self.lora, "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def model_family(model_dir: str) -> str:
    """``flux`` or ``sd15`` from a diffusers folder's ``model_index.json`` (hub IDs: from the name)."""
    index = Path(model_dir) / "model_index.json"
    if index.is_file():
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        return "flux" if cls.startswith("Flux") else "sd15"
    return "flux" if "flux" in model_dir.lower() else "sd15"


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW decoder output -> H x W x 3 uint8 (first image); rounding as diffusers' postprocess."""
    array = (images[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


class Renderer:
    """Base pipeline(s) kept warm, adapters from an :class:`AdapterPool`, one generation at a time."""

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config or RenderConfig()
        self._lock = threading.RLock()
        self._pipes: dict[str, Any] = {}
        self._pools: dict[str, AdapterPool] = {}
        self._vae_fp32: dict[int, Any] = {}   # id(pipe.vae) -> its float32 copy (half-precision runs)
        self.family: str | None = None
        self.device = self._resolve_device()
        self.dtype = self._resolve_dtype()
        self.load_seconds: dict[str, float] = {}
        # Counting tokens happens outside the render lock (prompt fitting while another request renders), and a
        # fast tokenizer's padding/truncation state is shared mutable state: counting uses its own copy.
        self._count_lock = threading.Lock()
        self._count_tokenizer: Any = None

    # ------------------------------------------------------------ setup
    def _resolve_device(self) -> str:
        if self.config.device == "cuda" and not torch.cuda.is_available():
            raise RenderError("generate.device = 'cuda' but no CUDA device is available; use cpu or auto")
        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.config.device

    def _resolve_dtype(self) -> torch.dtype:
        name = self.config.dtype
        if name == "auto":
            return torch.float32 if self.device == "cpu" else torch.float16
        if self.device == "cpu" and name == "float16":
            raise RenderError("generate.dtype = 'float16' is not supported on the CPU; use float32 or bfloat16")
        return getattr(torch, name)

    def _from_pretrained(self, cls: Any, name: str, field: str = "generate.base_model", **kwargs: Any) -> Any:
        from fitad import zoo

        path = _resolve(name, field)
        try:
            pipe = cls.from_pretrained(path, dtype=self.dtype, local_files_only=self.config.local_files_only,
                                       **kwargs)
        except (OSError, ValueError) as exc:
            raise RenderError(zoo.describe_missing_model(name, exc)) from None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    def _base(self) -> Any:
        with self._lock:  # info calls (native_size, count_tokens) may be the first to load it, from any thread
            return self._load_base()

    def _load_base(self) -> Any:
        if "base" not in self._pipes:
            from diffusers.utils import logging as diffusers_logging
            from transformers.utils import logging as transformers_logging

            # load bars and "no LoRA keys for the text encoder" notices are noise in a server log
            diffusers_logging.disable_progress_bar()
            diffusers_logging.set_verbosity_error()
            transformers_logging.disable_progress_bar()

            started = time.perf_counter()
            path = _resolve(self.config.base_model, "generate.base_model")
            family = self.config.family if self.config.family != "auto" else model_family(path)
            if family == "flux":
                from diffusers import FluxPipeline

                if self.device == "cuda" and self.config.dtype == "auto":
                    self.dtype = torch.bfloat16
                pipe = self._from_pretrained(FluxPipeline, self.config.base_model)
            else:
                from diffusers import StableDiffusionPipeline

                pipe = self._from_pretrained(StableDiffusionPipeline, self.config.base_model,
                                             safety_checker=None, requires_safety_checker=False)
            self.family = family
            self._pipes["base"] = pipe
            self._pools["base"] = AdapterPool(pipe, family, self.config)
            self.load_seconds["base"] = time.perf_counter() - started
        return self._pipes["base"]

    def _pipe(self, kind: str) -> tuple[Any, AdapterPool]:
        """The pipeline for ``kind`` (txt2img | img2img | inpaint | controlnet_inpaint) and its adapter pool."""
        base = self._base()
        if kind == "txt2img":
            return base, self._pools["base"]
        if kind in self._pipes:
            return self._pipes[kind], self._pools[self._pool_of(kind)]
        started = time.perf_counter()
        if self.family == "flux":
            from diffusers import FluxImg2ImgPipeline, FluxInpaintPipeline

            if kind == "controlnet_inpaint":
                raise RenderError("a ControlNet body guide is only available for the SD1.5 family")
            cls = FluxImg2ImgPipeline if kind == "img2img" else FluxInpaintPipeline
            pipe, pool = cls(**base.components), "base"  # shares the base modules and so its adapters
        else:
            from diffusers import (StableDiffusionControlNetInpaintPipeline, StableDiffusionImg2ImgPipeline,
                                   StableDiffusionInpaintPipeline)

            if kind == "img2img":
                pipe, pool = StableDiffusionImg2ImgPipeline(**base.components), "base"
            elif kind == "inpaint":
                if self.config.inpaint_model:
                    pipe = self._from_pretrained(StableDiffusionInpaintPipeline, self.config.inpaint_model,
                                                 "generate.inpaint_model",
                                                 safety_checker=None, requires_safety_checker=False)
                    self._pools["inpaint"] = AdapterPool(pipe, "sd15", self.config)
                    pool = "inpaint"
                else:  # legacy inpainting with the base's 4-channel UNet
                    pipe, pool = StableDiffusionInpaintPipeline(**base.components), "base"
            else:
                if not self.config.controlnet_model:
                    raise RenderError("no ControlNet configured (generate.controlnet_model)")
                inpaint, _ = self._pipe("inpaint")
                pipe = StableDiffusionControlNetInpaintPipeline(**inpaint.components,
                                                                controlnet=self._controlnet())
                pool = self._pool_of("inpaint")
        pipe.set_progress_bar_config(disable=True)
        self._pipes[kind] = pipe
        self._pools.setdefault(kind, self._pools[pool])
        self.load_seconds[kind] = time.perf_counter() - started
        return pipe, self._pools[kind]

    def _pool_of(self, kind: str) -> str:
        return kind if kind in self._pools else "base"

    def _controlnet(self) -> Any:
        from diffusers import ControlNetModel

        from fitad import zoo

        path = _resolve(self.config.controlnet_model, "generate.controlnet_model")
        try:
            model = ControlNetModel.from_pretrained(path, dtype=self.dtype,
                                                    local_files_only=self.config.local_files_only)
        except (OSError, ValueError) as exc:
            raise RenderError(zoo.describe_missing_model(self.config.controlnet_model, exc)) from None
        return model.to(self.device)

    def load(self, *kinds: str) -> "Renderer":
        """Load the base pipeline (and the named extra pipelines) now rather than on the first request."""
        with self._lock:
            for kind in kinds or ("txt2img",):
                self._pipe(kind)
        return self

    # ------------------------------------------------------------ info
    @property
    def base_family(self) -> str:
        self._base()
        return self.family or "sd15"

    def native_size(self) -> int:
        """The side the base model was trained at (512 for SD1.5, 1024 for FLUX; 64 for tiny-sd15)."""
        pipe = self._base()
        if self.family == "flux":
            return int(pipe.default_sample_size * pipe.vae_scale_factor)
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)

    def size_multiple(self) -> int:
        pipe = self._base()
        return int(pipe.vae_scale_factor * (2 if self.family == "flux" else 1))

    def token_budget(self) -> int:
        """The prompt window of the main text encoder (77 for CLIP, ``max_sequence_length`` for FLUX's T5)."""
        pipe = self._base()
        if self.family == "flux":
            return min(self.config.max_sequence_length, pipe.tokenizer_2.model_max_length)
        return int(pipe.tokenizer.model_max_length)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the window :meth:`token_budget` measures (start/end tokens included).

        Safe while another thread renders: it counts with a private copy of the tokenizer."""
        with self._count_lock:
            if self._count_tokenizer is None:
                pipe = self._base()
                self._count_tokenizer = copy.deepcopy(pipe.tokenizer_2 if self.family == "flux" else pipe.tokenizer)
            return count_tokens(self._count_tokenizer, text)

    def adapter_stats(self) -> dict[str, Any]:
        with self._lock:
            return {kind: {"loaded": pool.loaded_adapters(), "hot": pool.hot_key, "cpu_cached": len(pool.cpu),
                           "cpu_bytes": pool.cpu_bytes(), "activations": dict(pool.stats)}
                    for kind, pool in self._pools.items() if kind in ("base", "inpaint")}

    # ------------------------------------------------------------ helpers
    def _check_size(self, width: int, height: int) -> None:
        multiple = self.size_multiple()
        for name, value in (("width", width), ("height", height)):
            if value < multiple or value % multiple or value > 4096:
                raise RenderError(f"{name} = {value}: must be a multiple of {multiple} between {multiple} and 4096")

    def _activate(self, pool: AdapterPool, lora: str | AdapterSource | None, scale: float
                  ) -> tuple[dict[str, Any] | None, Activation | None]:
        if lora is None:
            pool.deactivate()
            return None, None
        source = lora if isinstance(lora, AdapterSource) else resolve_adapter(lora)
        if source.meta.family is not None and source.meta.family != self.family:
            raise LoraLoadError(f"{source.ref}: a {source.meta.family} adapter cannot be used with the "
                                f"{self.family} base model {self.config.base_model!r}")
        activation = pool.activate(source, scale)
        info = source.describe()
        info.update(scale=float(scale), adapter=activation.adapter, swap=activation.how,
                    swap_seconds=round(activation.seconds, 4))
        return info, activation

    def _encode_sd(self, pipe: Any, prompt: str, negative: str, clip_skip: int) -> dict[str, torch.Tensor]:
        ids = tokenize(pipe.tokenizer, [prompt, negative], self.device)
        with torch.no_grad():
            embeds = clip_hidden_states(pipe.text_encoder, ids, clip_skip)
        embeds = embeds.to(self.dtype)
        return {"prompt_embeds": embeds[:1], "negative_prompt_embeds": embeds[1:]}

    def _decoder(self, pipe: Any) -> Any:
        """The VAE that decodes ``pipe``'s latents: its own, or a float32 copy of it when it runs in half precision."""
        if not self.config.vae_fp32 or pipe.vae.dtype == torch.float32:
            return pipe.vae
        key = id(pipe.vae)  # the inpaint model may bring its own VAE: each gets its own float32 copy
        if key not in self._vae_fp32:
            self._vae_fp32[key] = copy.deepcopy(pipe.vae).to(torch.float32)
        return self._vae_fp32[key]

    def _decode(self, pipe: Any, latents: torch.Tensor, width: int, height: int) -> np.ndarray:
        vae = self._decoder(pipe)
        if self.family == "flux":
            latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
            latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        else:
            latents = latents / vae.config.scaling_factor
        with torch.no_grad():
            images = vae.decode(latents.to(vae.device, vae.dtype), return_dict=False)[0]
        return _to_uint8(images)

    def _run(self, kind: str, *, prompt: str, negative_prompt: str, width: int, height: int, steps: int | None,
             guidance: float | None, seed: int, lora: Any, lora_scale: float, progress: ProgressFn | None,
             extra: dict[str, Any]) -> RenderResult:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise RenderError(f"seed = {seed!r}: must be an integer between 0 and 2**63 - 1")
        steps = self.config.steps if steps is None else int(steps)
        guidance = self.config.guidance if guidance is None else float(guidance)
        if not 1 <= steps <= 200:
            raise RenderError(f"steps = {steps}: must be between 1 and 200")
        if not 0.0 <= guidance <= 50.0:
            raise RenderError(f"guidance = {guidance}: must be between 0 and 50")
        if not -4.0 <= lora_scale <= 4.0:
            raise RenderError(f"lora_scale = {lora_scale}: must be between -4 and 4")
        with self._lock:
            started = time.perf_counter()
            pipe, pool = self._pipe(kind)
            self._check_size(width, height)
            lora_info, _ = self._activate(pool, lora, lora_scale)
            # a LoRA renders with the clip skip it was trained with (its manifest or ss_clip_skip says which)
            clip_skip = (lora_info or {}).get("clip_skip") or self.config.clip_skip
            if lora_info is not None:
                lora_info["clip_skip"] = clip_skip
            timings = {"adapter": time.perf_counter() - started}
            total = int(steps * extra.get("strength", 1.0)) or 1

            def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
                if progress is not None:
                    progress(Progress(kind, min(step + 1, total), total, time.perf_counter() - started))
                return kwargs

            t0 = time.perf_counter()
            args: dict[str, Any] = dict(num_inference_steps=steps, guidance_scale=guidance, width=width,
                                        height=height, output_type="latent", callback_on_step_end=on_step,
                                        generator=torch.Generator("cpu").manual_seed(seed), **extra)
            if kind == "img2img" and self.family != "flux":
                del args["width"], args["height"]  # SD img2img takes its size from the image
            if self.family == "flux":
                args.update(prompt=prompt, max_sequence_length=self.config.max_sequence_length)
            else:
                args.update(self._encode_sd(pipe, prompt, negative_prompt, clip_skip))
            timings["encode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.no_grad():
                latents = pipe(**args).images
            timings["denoise"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            image = self._decode(pipe, latents, width, height)
            timings["decode"] = time.perf_counter() - t0
            timings["total"] = time.perf_counter() - started
        base_name = self.config.inpaint_model if (kind in ("inpaint", "controlnet_inpaint") and self.family == "sd15"
                                                  and self.config.inpaint_model) else self.config.base_model
        return RenderResult(image=image, seed=seed, steps=steps, guidance=guidance, width=width, height=height,
                            prompt=prompt, negative_prompt=negative_prompt if self.family != "flux" else "",
                            base_model=base_name, family=self.family or "sd15", pipeline=type(pipe).__name__,
                            lora=lora_info, timings=timings)

    # ------------------------------------------------------------ public calls
    def txt2img(self, prompt: str, *, negative_prompt: str = "", width: int | None = None,
                height: int | None = None, steps: int | None = None, guidance: float | None = None,
                seed: int = 0, lora: Any = None, lora_scale: float = 1.0,
                progress: ProgressFn | None = None) -> RenderResult:
        """Text to image at ``width`` x ``height`` (default: the model's native square)."""
        with self._lock:  # the first call loads the base: two first callers must not load it twice
            size = self.native_size()
            return self._run("txt2img", prompt=prompt, negative_prompt=negative_prompt,
                             width=size if width is None else width, height=size if height is None else height,
                             steps=steps, guidance=guidance, seed=seed, lora=lora, lora_scale=lora_scale,
                             progress=progress, extra={})

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str, *, negative_prompt: str = "",
                steps: int | None = None, guidance: float | None = None, seed: int = 0, strength: float = 1.0,
                lora: Any = None, lora_scale: float = 1.0, control_image: np.ndarray | None = None,
                control_scale: float = 1.0, progress: ProgressFn | None = None) -> RenderResult:
        """Repaint where ``mask`` is 255 (H x W uint8); ``image`` (H x W x 3 uint8) sets the size.

        ``control_image`` (an edge or pose map, H x W x 3) guides the repainted area through the configured
        ControlNet.
        """
        from PIL import Image

        _check_image("image", image)
        if mask.shape != image.shape[:2]:
            raise RenderError(f"mask: shape {mask.shape} does not match the image's {image.shape[:2]}")
        if not 0.0 < strength <= 1.0:
            raise RenderError(f"strength = {strength}: must be in (0, 1]")
        extra: dict[str, Any] = {"image": Image.fromarray(image), "mask_image": Image.fromarray(mask),
                                 "strength": strength}
        kind = "inpaint"
        if control_image is not None:
            _check_image("control_image", control_image)
            extra.update(control_image=Image.fromarray(control_image),
                         controlnet_conditioning_scale=float(control_scale))
            kind = "controlnet_inpaint"
        height, width = image.shape[:2]
        return self._run(kind, prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                         steps=steps, guidance=guidance, seed=seed, lora=lora, lora_scale=lora_scale,
                         progress=progress, extra=extra)

    def img2img(self, image: np.ndarray, prompt: str, *, negative_prompt: str = "", strength: float = 0.5,
                steps: int | None = None, guidance: float | None = None, seed: int = 0, lora: Any = None,
                lora_scale: float = 1.0, progress: ProgressFn | None = None) -> RenderResult:
        """Re-render ``image`` (its size) keeping its layout; ``strength`` is how much is repainted."""
        from PIL import Image

        _check_image("image", image)
        if not 0.0 < strength <= 1.0:
            raise RenderError(f"strength = {strength}: must be in (0, 1]")
        height, width = image.shape[:2]
        return self._run("img2img", prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                         steps=steps, guidance=guidance, seed=seed, lora=lora, lora_scale=lora_scale,
                         progress=progress, extra={"image": Image.fromarray(image), "strength": strength})


def _resolve(name: str, field: str) -> str:
    """zoo.resolve_model with a RenderError naming the config key for a local path that does not exist."""
    from fitad import zoo

    try:
        return zoo.resolve_model(name)
    except FileNotFoundError as exc:
        raise RenderError(f"{field}: {exc}") from None


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RenderError(f"{name}: expected an H x W x 3 uint8 array")
