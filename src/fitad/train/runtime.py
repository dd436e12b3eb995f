"""Machine-facing pieces shared by the trainers: backend checks, base-model lookup, accelerate,
optimizer, LR schedule, memory measurement and the ``auto`` speed settings (gradient checkpointing,
loss-sync interval).

Everything that can reject a run (no CUDA for 8-bit AdamW, a base model that is neither a local
directory nor in the offline hub cache) runs before any model is loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from fitad.config import ConfigError
from fitad.train.config import FluxLoraConfig, LoraTrainConfig

if TYPE_CHECKING:
    import torch


class ModelNotFoundError(ValueError):
    """The configured base model cannot be found (missing directory, not a diffusers model, offline hub)."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_backends(config: LoraTrainConfig) -> None:
    """Refuse settings this machine cannot run (bitsandbytes needs CUDA and the package)."""
    wanted = []
    if config.optimizer == "adamw8bit":
        wanted.append(f"{config.SECTION}.optimizer = 'adamw8bit'")
    if isinstance(config, FluxLoraConfig) and config.quantize_base != "none":
        wanted.append(f"{config.SECTION}.quantize_base = {config.quantize_base!r}")
    if not wanted:
        return
    what = " and ".join(wanted)
    if not cuda_available():
        raise ConfigError(f"{what} needs bitsandbytes on a CUDA GPU, and no CUDA device is available; "
                          f"use optimizer 'adamw' / quantize_base 'none' on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"{what} needs the bitsandbytes package: pip install 'fitad[cuda]'")


def resolve_base_model(name_or_path: str) -> str:
    """Map the configured base to a loadable location, or raise :class:`ModelNotFoundError`.

    Tiny names build on demand; local paths must be diffusers directories (``model_index.json``);
    hub IDs must be in the local cache when the hub is offline.
    """
    from fitad.zoo import hub_offline, resolve_model

    try:
        resolved = resolve_model(name_or_path)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"base model: {exc}") from None
    path = Path(resolved)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(f"base model {str(path)!r} is not a diffusers pipeline directory "
                                     f"(no model_index.json); save it with save_pretrained first")
        return resolved
    if hub_offline() and _model_index(resolved) is None:
        raise ModelNotFoundError(
            f"base model {resolved!r} is not a local directory and is not in the Hugging Face cache, "
            f"and the hub is offline (HF_HUB_OFFLINE=1): download it on a connected machine "
            f"(hf download {resolved}) or set base_model to a local diffusers directory or a tiny "
            f"model such as 'tiny-sd15'")
    return resolved


# model_index.json "_class_name" prefixes each family can train from.
_FAMILY_PIPELINES = {"sd15": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
                     "flux": ("FluxPipeline", "FluxImg2ImgPipeline")}


def _model_index(resolved: str) -> Path | None:
    path = Path(resolved) / "model_index.json"
    if path.is_file():
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(resolved, "model_index.json")
    return Path(cached) if isinstance(cached, str) else None


def check_pipeline_family(resolved: str, family: str) -> None:
    """Refuse a base whose model_index.json names another family's pipeline (e.g. FLUX for --family sd15)."""
    index = _model_index(resolved)
    if index is None:
        return  # an online hub ID: from_pretrained reports problems
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, json.JSONDecodeError):
        raise ModelNotFoundError(f"base model {resolved!r}: {index} is not valid JSON") from None
    if class_name not in _FAMILY_PIPELINES[family]:
        other = next((f for f, names in _FAMILY_PIPELINES.items() if class_name in names), None)
        hint = f"; train it with --family {other}" if other else ""
        expected = " or ".join(_FAMILY_PIPELINES[family])
        raise ModelNotFoundError(f"base model {resolved!r} is a {class_name or 'pipeline without _class_name'}, "
                                 f"which family {family!r} cannot train (expects {expected}){hint}")


def load_error(name: str, exc: Exception) -> ModelNotFoundError:
    from fitad.zoo import describe_missing_model

    return ModelNotFoundError(describe_missing_model(name, exc))


# ---------------------------------------------------------------- accelerate

def make_accelerator(config: LoraTrainConfig):
    """An Accelerator with mixed precision on CUDA only (fp32 on CPU) and the configured accumulation."""
    from accelerate import Accelerator

    precision = resolve_mixed_precision(config.mixed_precision, cuda_available())
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.gradient_accumulation)


def resolve_mixed_precision(requested: str, cuda: bool) -> str:
    """``auto`` → bf16 where the GPU supports it, else fp16; always ``no`` without CUDA."""
    if not cuda:
        return "no"
    if requested != "auto":
        return requested
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def weight_dtype(accelerator) -> "torch.dtype":
    """Dtype of the frozen weights: the mixed-precision type; trainable weights stay fp32."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def place(module: "torch.nn.Module", device: "torch.device", dtype: "torch.dtype | None" = None) -> None:
    """Move ``module`` to ``device`` and cast only if its dtype differs (diffusers warns on every cast)."""
    module.to(device)
    if dtype is not None and next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)


def make_optimizer(config: LoraTrainConfig, params: Iterable["torch.nn.Parameter"]):
    """AdamW, or bitsandbytes' 8-bit AdamW (CUDA only; checked by :func:`check_backends`)."""
    kwargs = dict(lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                  eps=config.adam_epsilon, weight_decay=config.weight_decay)
    if config.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(list(params), **kwargs)
    import torch

    return torch.optim.AdamW(list(params), **kwargs)


def make_lr_scheduler(config: LoraTrainConfig, optimizer, num_processes: int):
    """diffusers' LR schedule; counts are per process because accelerate steps it once per process."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(config.lr_scheduler, optimizer=optimizer,
                         num_warmup_steps=config.lr_warmup_steps * num_processes,
                         num_training_steps=config.steps * num_processes)


# ---------------------------------------------------------------- memory

def peak_memory_mb(device: "torch.device") -> tuple[float, str]:
    """Peak memory so far and what was measured: CUDA max allocated, or the process's peak RSS."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / (2**20 if sys.platform == "darwin" else 2**10), "cpu_max_rss"


def backend_versions() -> dict[str, Any]:
    import accelerate
    import diffusers
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(), "world_size": int(os.environ.get("WORLD_SIZE", "1"))}


# ---------------------------------------------------------------- auto speed settings

# gradient_checkpointing: auto lets a training step use this share of the card's total memory; the
# rest is headroom for the allocator's fragmentation, backward's transient buffers and other processes.
AUTO_CHECKPOINT_VRAM_FRACTION = 0.85
# Backward briefly holds activation gradients next to the saved activations: count this much extra.
BACKWARD_OVERHEAD = 1.25
LOG_EVERY_CUDA = 10


def resolve_log_every(log_every: int | str, device: "torch.device") -> int:
    """``auto`` → 10 on CUDA (the loss is synced to the host once per window), 1 elsewhere."""
    if log_every != "auto":
        return int(log_every)
    return LOG_EVERY_CUDA if device.type == "cuda" else 1


def activation_memory_budget(device: "torch.device") -> int | None:
    """Bytes a training step may still claim on ``device`` for activations, or None (no budget).

    CUDA: ``AUTO_CHECKPOINT_VRAM_FRACTION`` of the total memory minus what is in use already (the
    models, caches and other processes: total − free from ``torch.cuda.mem_get_info``), measured
    after the models and caches are in place. Other devices: None; on CPU RAM is plentiful and
    checkpointing only costs time.
    """
    if device.type != "cuda":
        return None
    import torch

    free, total = torch.cuda.mem_get_info(device)
    return int(AUTO_CHECKPOINT_VRAM_FRACTION * total) - (total - free)


class SavedBytes:
    """Result of :func:`count_saved_activation_bytes`: ``bytes`` grows while the block runs."""

    def __init__(self) -> None:
        self.bytes = 0


@contextlib.contextmanager
def count_saved_activation_bytes(resident: Iterable["torch.nn.Parameter"]) -> Iterator[SavedBytes]:
    """Count the bytes autograd saves for backward in this block: the activation memory of a step.

    Each saved tensor storage is counted once; storages of ``resident`` parameters (weights that are
    in memory anyway) are not counted. The saved tensors are *not* kept: the graph built inside holds
    placeholders, so a probe forward needs no more memory than inference and cannot run backward.
    """
    import torch

    skip = {p.untyped_storage().data_ptr() for p in resident}
    seen: set[int] = set()
    result = SavedBytes()

    def pack(tensor: torch.Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
            result.bytes += tensor.numel() * tensor.element_size()
            return None
        ptr = storage.data_ptr()
        if ptr not in skip and ptr not in seen:
            seen.add(ptr)
            result.bytes += storage.nbytes()
        return None

    def unpack(_: None) -> torch.Tensor:
        raise RuntimeError("a graph built under count_saved_activation_bytes cannot run backward")

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield result


def resolve_gradient_checkpointing(requested: bool | str, device: "torch.device",
                                   measure: Callable[[], int]) -> tuple[bool, str]:
    """Settle ``gradient_checkpointing``: (use it?, why), for the train summary and the tracker.

    ``true``/``false`` are used as given. ``auto``: off without a device memory budget (CPU); else
    ``measure()`` returns the bytes one micro-batch's forward saves for backward without
    checkpointing, and checkpointing goes on when those (× :data:`BACKWARD_OVERHEAD`) exceed
    :func:`activation_memory_budget`. Checkpointing trades ~30% more compute for activations that
    shrink to the block boundaries, so it is only worth it where memory is short.
    """
    if requested != "auto":
        return bool(requested), f"set in the config (gradient_checkpointing: {str(bool(requested)).lower()})"
    budget = activation_memory_budget(device)
    if budget is None:
        return False, (f"auto: off on {device.type} (no device memory budget: RAM is plentiful and "
                       f"checkpointing only costs time)")
    need = int(measure() * BACKWARD_OVERHEAD)
    used = need > budget
    verdict = "exceed" if used else "fit"
    return used, (f"auto: {'on' if used else 'off'}, the activations of one micro-batch without checkpointing "
                  f"(~{_gb(need)} with backward's overhead) {verdict} the {_gb(budget)} budget "
                  f"({AUTO_CHECKPOINT_VRAM_FRACTION:.0%} of {device} memory minus what is in use)")


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MB"


def set_gradient_checkpointing(model: "torch.nn.Module", on: bool) -> None:
    """Turn activation checkpointing of a diffusers or transformers model on or off."""
    if hasattr(model, "enable_gradient_checkpointing"):  # diffusers
        (model.enable_gradient_checkpointing if on else model.disable_gradient_checkpointing)()
        return
    # transformers (v5 renamed gradient_checkpointing_* to activation_checkpointing_*)
    name = "enable" if on else "disable"
    method = (getattr(model, f"activation_checkpointing_{name}", None)
              or getattr(model, f"gradient_checkpointing_{name}"))
    method()
