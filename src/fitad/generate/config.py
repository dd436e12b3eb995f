"""Renderer settings (``generate:`` section of params.yaml)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fitad.config import check_choice, check_range

FAMILIES = ("auto", "sd15", "flux")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclasses.dataclass
class RenderConfig:
    """Which base models the renderer loads and how it renders by default.

    ``base_model``/``inpaint_model`` take a zoo name (``tiny-sd15``), a local diffusers directory or a hub
    model ID. ``inpaint_model: null`` inpaints with the base model's own UNet (diffusers' legacy 4-channel
    inpainting) instead of loading a second model.
    """

    SECTION: ClassVar[str] = "generate"
    base_model: str = "tiny-sd15"
    inpaint_model: str | None = "tiny-sd15-inpaint"
    controlnet_model: str | None = None      # e.g. tiny-controlnet or lllyasviel/control_v11p_sd15_canny
    family: str = "auto"                     # auto: read from the model's model_index.json
    device: str = "auto"                     # auto: cuda when available
    dtype: str = "auto"                      # auto: float16 on CUDA (bf16 for FLUX), float32 on CPU
    vae_fp32: bool = True                    # decode latents with the VAE in float32 ("fried image" fix)
    steps: int = 20
    guidance: float = 7.0                    # classifier-free guidance (FLUX: the guidance embedding)
    clip_skip: int = 2                       # SD1.5 family, A1111 convention (1 = last layer); a LoRA that
                                             # records its training clip skip renders with that one
    resident_adapters: int = 4               # adapters kept loaded in the pipeline (LRU)
    cached_adapters: int = 16                # adapter state dicts kept in CPU memory (LRU)
    hotswap: bool = True                     # swap compatible adapters in place, in one rank-padded slot
    hotswap_max_rank: int = 64               # the largest rank a hot-swapped adapter may have
    max_sequence_length: int = 512           # FLUX T5 window
    local_files_only: bool = True            # never download base models at render time

    def __post_init__(self) -> None:
        s = self.SECTION
        check_choice(s, "family", self.family, FAMILIES)
        check_choice(s, "device", self.device, DEVICES)
        check_choice(s, "dtype", self.dtype, DTYPES)
        check_range(s, "steps", self.steps, lo=1, hi=200)
        check_range(s, "guidance", self.guidance, lo=0.0, hi=50.0)
        check_range(s, "clip_skip", self.clip_skip, lo=1, hi=12)
        check_range(s, "resident_adapters", self.resident_adapters, lo=1, hi=64)
        check_range(s, "cached_adapters", self.cached_adapters, lo=self.resident_adapters, hi=1024)
        check_range(s, "hotswap_max_rank", self.hotswap_max_rank, lo=1, hi=1024)
        check_range(s, "max_sequence_length", self.max_sequence_length, lo=16, hi=512)
