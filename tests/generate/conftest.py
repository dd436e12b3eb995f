"""Fixtures for the renderer tests: tiny model dirs, adapters of every kind, independent diffusers references.

References never go through :mod:`fitad.generate`: they are plain diffusers pipelines loaded from the tiny
model folders, with adapters loaded by :func:`fitad.lora.load.load_lora_into_pipeline` (the reference loader,
checked against other tools in tests/lora), rendered with ``output_type='np'`` and rounded like diffusers'
own postprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fitad import zoo

PROMPT = "a photo of sks bottle on a table"
SD_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def models(tiny_models_root) -> dict[str, str]:
    """Local directories of the tiny models the renderer tests use."""
    names = {"base": "tiny-sd15", "inpaint": "tiny-sd15-inpaint", "flux": "tiny-flux",
             "controlnet": "tiny-controlnet"}
    return {key: str(zoo.ensure_tiny(name, tiny_models_root)) for key, name in names.items()}


@pytest.fixture
def sd_config(models):
    """``sd_config(**overrides)`` -> RenderConfig on tiny-sd15 (+ inpaint twin), 2 steps."""
    from fitad.generate.config import RenderConfig

    def make(**overrides: Any) -> RenderConfig:
        kwargs = dict(base_model=models["base"], inpaint_model=models["inpaint"], steps=2, guidance=7.0)
        kwargs.update(overrides)
        return RenderConfig(**kwargs)

    return make


@pytest.fixture
def make_renderer(sd_config):
    from fitad.generate.renderer import Renderer

    return lambda **overrides: Renderer(sd_config(**overrides))


# ---------------------------------------------------------------- adapters

def _info(family: str, adapter_type: str, rank: int, alpha: float, targets: list[str], text_encoder: bool,
          seed: int) -> dict:
    return {"family": family, "base_model": "tiny-sd15" if family == "sd15" else "tiny-flux",
            "adapter_type": adapter_type, "rank": rank, "alpha": alpha, "target_modules": targets,
            "text_encoder_lora": text_encoder, "trigger": "sks", "resolution": 64, "steps": 0,
            "dataset_hash": f"test-seed-{seed}",
            "prediction_type": "epsilon" if family == "sd15" else "flow_matching"}


def write_sd_adapter(out: Path, base_dir: str, *, adapter_type: str = "lora", rank: int = 4, alpha: float = 4.0,
                     seed: int = 0, text_encoder: bool = False) -> Path:
    """A LORA_DIR for tiny-sd15 laid out as training writes it, with random non-zero weights.

    LoRA / DoRA: diffusers' ``save_lora_weights`` with the PEFT config as adapter metadata. DoRA magnitudes are
    perturbed away from the weight norms (else DoRA would equal the plain LoRA and a dropped magnitude would go
    unnoticed). LoKr: ``peft/<component>/`` folders.
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoKrConfig, LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    models = {"unet": (UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet"), SD_TARGETS)}
    if text_encoder:
        models["text_encoder"] = (CLIPTextModel.from_pretrained(base_dir, subfolder="text_encoder"), TEXT_TARGETS)
    out.mkdir(parents=True)
    states, configs = {}, {}
    for name, (model, targets) in models.items():
        if adapter_type == "lokr":
            config = LoKrConfig(r=rank, alpha=alpha, target_modules=targets, init_weights=False)
        else:
            config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                                use_dora=adapter_type == "dora")
        model.add_adapter(config)
        if adapter_type == "dora":
            with torch.no_grad():
                for param_name, param in model.named_parameters():
                    if "lora_magnitude_vector" in param_name:
                        param.mul_(1.0 + 0.3 * torch.rand_like(param))
        states[name] = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        configs[name] = config
    if adapter_type == "lokr":
        for name, state in states.items():
            folder = out / "peft" / name
            folder.mkdir(parents=True)
            configs[name].save_pretrained(str(folder))
            save_file(state, str(folder / "adapter_model.safetensors"))
    else:
        kwargs: dict[str, Any] = {}
        for name, state in states.items():
            kwargs[f"{name}_lora_layers"] = state
            kwargs[f"{name}_lora_adapter_metadata"] = configs[name].to_dict()
        StableDiffusionPipeline.save_lora_weights(str(out), **kwargs)
    info = _info("sd15", adapter_type, rank, alpha, SD_TARGETS, text_encoder, seed)
    (out / "fitad_lora.json").write_text(json.dumps(info), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, tiny_models_root, models) -> dict[str, Path]:
    """Adapters for tiny-sd15 (and one for tiny-flux), built once per session.

    a, b, c, d: UNet-only LoRAs on the same modules with different rank / alpha (hot-swappable into one slot);
    te: LoRA on UNet + text encoder; dora: DoRA; lokr: LoKr; kohya: ``a2`` exported to a kohya file;
    flux: a tiny-flux LoRA.
    """
    from fitad.lora.export import export_kohya

    root = tmp_path_factory.mktemp("adapters")
    out: dict[str, Path] = {}
    for key, rank, alpha, seed in (("a", 4, 4.0, 1), ("b", 8, 2.0, 2), ("c", 2, 6.0, 3), ("d", 6, 6.0, 4),
                                   ("a2", 4, 8.0, 5)):
        out[key] = zoo.build_tiny_lora(root / key, rank=rank, alpha=alpha, seed=seed, root=tiny_models_root)
    out["te"] = write_sd_adapter(root / "te", models["base"], rank=4, alpha=8.0, seed=6, text_encoder=True)
    out["dora"] = write_sd_adapter(root / "dora", models["base"], adapter_type="dora", rank=4, alpha=4.0, seed=7)
    out["lokr"] = write_sd_adapter(root / "lokr", models["base"], adapter_type="lokr", rank=4, alpha=2.0, seed=8)
    out["kohya"] = export_kohya(out["a2"], root / "a2_kohya.safetensors")
    out["flux"] = zoo.build_tiny_lora(root / "flux", family="flux", rank=4, alpha=8.0, seed=9,
                                      root=tiny_models_root)
    return out


@pytest.fixture(scope="session")
def guided_controlnet(tmp_path_factory, models) -> str:
    """tiny-controlnet with a conditioning embedding that passes the guide image on.

    The zoo's tiny-controlnet keeps diffusers' zero-initialised ``controlnet_cond_embedding.conv_out`` (and the
    default init fades the guide to ~1e-4 through the embedding's 7 convs), so its control image has no visible
    effect. Here the embedding gets He init and a small random conv_out.
    """
    from diffusers import ControlNetModel

    model = ControlNetModel.from_pretrained(models["controlnet"])
    embedding = model.controlnet_cond_embedding
    torch.manual_seed(0)
    with torch.no_grad():
        for conv in [embedding.conv_in, *embedding.blocks]:
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        embedding.conv_out.weight.normal_(0.0, 0.05)
    out = tmp_path_factory.mktemp("guided-controlnet")
    model.save_pretrained(out, safe_serialization=True)
    return str(out)


# ---------------------------------------------------------------- independent references

def to_uint8(images: np.ndarray) -> np.ndarray:
    """diffusers' float [0, 1] output -> uint8 as its own numpy_to_pil rounds."""
    return (np.asarray(images)[0] * 255).round().astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def sd_pipeline(base_dir: str) -> Any:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(base_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def sd_reference(models):
    """``sd_reference(lora=None, scale=1.0, seed=0, prompt=PROMPT, steps=2, guidance=7.0, size=64)`` -> uint8.

    A fresh StableDiffusionPipeline per call (adapters never leak between references), its own prompt
    encoding (compare with clip_skip=1), results memoised.
    """
    from fitad.lora.load import load_lora_into_pipeline

    memo: dict[tuple, np.ndarray] = {}

    def render(lora: Path | None = None, scale: float = 1.0, seed: int = 0, prompt: str = PROMPT, steps: int = 2,
               guidance: float = 7.0, size: int = 64, negative: str = "") -> np.ndarray:
        key = (str(lora), scale, seed, prompt, steps, guidance, size, negative)
        if key not in memo:
            pipe = sd_pipeline(models["base"])
            if lora is not None:
                load_lora_into_pipeline(pipe, lora, scale)
            with torch.no_grad():
                images = pipe(prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                              width=size, height=size, output_type="np",
                              generator=torch.Generator().manual_seed(seed)).images
            memo[key] = to_uint8(images)
        return memo[key]

    return render


def lora_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def rss_mb() -> float:
    """Resident set size from /proc/self/statm (after a full garbage collection)."""
    import gc
    import os

    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as fh:
        resident_pages = int(fh.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
