"""Adapter directories like the ones training writes, built on the tiny models.

A PEFT adapter is injected into a tiny pipeline with random (non-zero) weights, the image it renders is kept as
the reference, and the adapter is saved the way training saves it: ``save_lora_weights`` with the PEFT config as
adapter metadata (LoRA/DoRA), or ``peft/<component>/`` (LoKr), plus ``fitad_lora.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from fitad import zoo

SD_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
FLUX_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "proj_mlp", "proj_out"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TINY = {"sd15": "tiny-sd15", "flux": "tiny-flux"}
DENOISER = {"sd15": "unet", "flux": "transformer"}
_BASE_IMAGES: dict[tuple[str, str], np.ndarray] = {}  # the base image depends only on the tiny model


def load_pipeline(family: str, models_root: Path) -> Any:
    from diffusers import FluxPipeline, StableDiffusionPipeline

    cls = StableDiffusionPipeline if family == "sd15" else FluxPipeline
    pipe = cls.from_pretrained(zoo.ensure_tiny(TINY[family], models_root))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: Any) -> np.ndarray:
    """64 px, 2 steps, fixed seed: enough to compare adapters, fast on CPU."""
    kwargs = {"guidance_scale": 3.5, "max_sequence_length": 16} if hasattr(pipe, "transformer") else {}
    out = pipe("a photo of sks bottle", num_inference_steps=2, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0), **kwargs)
    return out.images


@dataclasses.dataclass
class TinyAdapter:
    lora_dir: Path
    family: str
    adapter_type: str
    rank: int
    alpha: float
    pipe: Any                    # the in-memory pipeline carrying the PEFT adapter ("default")
    base: np.ndarray             # image without any adapter
    reference: np.ndarray        # image with the PEFT adapter
    without_text_encoder: np.ndarray | None  # image with the text-encoder part of the adapter disabled


def _peft_config(adapter_type: str, rank: int, alpha: float, targets: list[str], extra: dict) -> Any:
    from peft import LoKrConfig, LoraConfig

    if adapter_type == "lokr":
        return LoKrConfig(r=rank, alpha=alpha, target_modules=targets, init_weights=False, **extra)
    # init_lora_weights=False: lora_B random too, so the adapter visibly changes the image.
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                      use_dora=adapter_type == "dora", **extra)


def build_adapter(out_dir: Path, models_root: Path, family: str = "sd15", adapter_type: str = "lora",
                  rank: int = 4, alpha: float = 4.0, text_encoder: bool = False,
                  targets: list[str] | None = None, extra: dict | None = None,
                  text_extra: dict | None = None, trigger: str | None = "sks") -> TinyAdapter:
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    pipe = load_pipeline(family, models_root)
    key = (str(models_root), family)
    if key not in _BASE_IMAGES:
        _BASE_IMAGES[key] = render(pipe)
    base = _BASE_IMAGES[key]
    torch.manual_seed(1234)
    models = {DENOISER[family]: (targets or (SD_TARGETS if family == "sd15" else FLUX_TARGETS), extra or {})}
    if text_encoder:
        models["text_encoder"] = (TEXT_TARGETS, text_extra or {})
    for name, (module_targets, kwargs) in models.items():
        getattr(pipe, name).add_adapter(_peft_config(adapter_type, rank, alpha, module_targets, kwargs))
    reference = render(pipe)
    without_text_encoder = None
    if text_encoder:
        pipe.text_encoder.disable_adapters()
        without_text_encoder = render(pipe)
        pipe.text_encoder.enable_adapters()

    lora_dir = out_dir / "lora"
    lora_dir.mkdir(parents=True)
    states = {name: {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(getattr(pipe, name)).items()}
              for name in models}
    if adapter_type == "lokr":
        for name, state in states.items():
            folder = lora_dir / "peft" / name
            folder.mkdir(parents=True)
            getattr(pipe, name).peft_config["default"].save_pretrained(str(folder))
            save_file(state, str(folder / "adapter_model.safetensors"))
    else:
        kwargs = {}
        for name, state in states.items():
            kwargs[f"{name}_lora_layers"] = state
            kwargs[f"{name}_lora_adapter_metadata"] = getattr(pipe, name).peft_config["default"].to_dict()
        type(pipe).save_lora_weights(str(lora_dir), **kwargs)
    info = {"family": family, "base_model": TINY[family], "adapter_type": adapter_type, "rank": rank,
            "alpha": alpha, "target_modules": models[DENOISER[family]][0], "text_encoder_lora": text_encoder,
            "trigger": trigger, "resolution": 64, "steps": 10, "dataset_hash": "abc123",
            "prediction_type": "epsilon" if family == "sd15" else "flow_matching"}
    (lora_dir / "fitad_lora.json").write_text(json.dumps(info), encoding="utf-8")
    return TinyAdapter(lora_dir, family, adapter_type, rank, alpha, pipe, base, reference, without_text_encoder)


@pytest.fixture
def make_adapter(tmp_path, tiny_models_root) -> Callable[..., TinyAdapter]:
    """``make_adapter(family=..., adapter_type=..., rank=..., alpha=..., text_encoder=...)`` -> TinyAdapter."""
    counter = iter(range(1000))

    def make(**kwargs) -> TinyAdapter:
        return build_adapter(tmp_path / f"adapter{next(counter)}", Path(tiny_models_root), **kwargs)

    return make


@pytest.fixture
def fresh_pipeline(tiny_models_root) -> Callable[[str], Any]:
    return lambda family: load_pipeline(family, Path(tiny_models_root))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""
