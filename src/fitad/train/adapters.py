"""PEFT adapters: build them from the config, attach them, and write the adapter output directory.

Output contract (read by export, serving and evaluation)::

    OUT_DIR/lora/pytorch_lora_weights.safetensors   LoRA/DoRA, diffusers-native (pipe.load_lora_weights(dir))
    OUT_DIR/lora/peft/                              LoKr: adapter_config.json + adapter_model.safetensors
    OUT_DIR/lora/fitad_lora.json                    what was trained (family, base, rank, alpha, ...)

LoKr is not a LoRA that diffusers' loaders accept, so it is stored in PEFT's own adapter format
(the layout ``PeftModel.save_pretrained`` writes) and ``fitad_lora.json`` says so in ``weights``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from fitad.fsutil import atomic_dir, atomic_write_json
from fitad.config import ConfigError
from fitad.lora.export import INFO_FILE as MANIFEST, PEFT_DIR as PEFT_SUBDIR, WEIGHTS_FILE as LORA_WEIGHTS
from fitad.train.config import LoraTrainConfig



def adapter_config(config: LoraTrainConfig, target_modules: list[str]):
    """The PEFT config for the configured adapter type (LoRA, DoRA or LoKr)."""
    from peft import LoKrConfig, LoraConfig

    if config.adapter_type == "lokr":
        return LoKrConfig(r=config.rank, alpha=config.alpha, target_modules=list(target_modules),
                          module_dropout=config.lora_dropout)
    # Gaussian A / zero B: the adapter starts as an exact no-op, as in diffusers' LoRA examples.
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, target_modules=list(target_modules),
                      lora_dropout=config.lora_dropout, init_lora_weights="gaussian",
                      use_dora=config.use_dora)


def attach_adapter(model: torch.nn.Module, config: LoraTrainConfig, target_modules: list[str]) -> None:
    """Freeze ``model`` and add the adapter; only adapter weights end up trainable."""
    model.requires_grad_(False)
    try:
        model.add_adapter(adapter_config(config, target_modules))
    except ValueError as exc:  # PEFT's "Target modules ... not found in the base model"
        raise ConfigError(f"{config.SECTION}.target_modules = {target_modules}: {exc}") from None


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def cast_trainable_to_fp32(models: Mapping[str, torch.nn.Module]) -> None:
    """Keep the adapter in fp32 while frozen weights run in fp16/bf16 (stable updates, GradScaler)."""
    for model in models.values():
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()


def adapter_state(model: torch.nn.Module, component: str = "unet") -> dict[str, torch.Tensor]:
    """The adapter's weights in PEFT naming (what diffusers' save_lora_weights expects).

    Text-encoder DoRA magnitudes are named ``….lora_magnitude_vector.weight``: transformers' adapter
    loader (used by ``load_lora_weights``) matches only that name and would otherwise silently
    re-initialise them.
    """
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    rename = component.startswith("text_encoder")
    return {(f"{k}.weight" if rename and k.endswith(".lora_magnitude_vector") else k):
            v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def adapter_metadata(model: torch.nn.Module) -> dict[str, Any]:
    """The PEFT config as a dict (carries r and lora_alpha, so loading reproduces alpha != rank)."""
    return model.peft_config["default"].to_dict()


def manifest(config: LoraTrainConfig, *, prediction_type: str, dataset_hash: str, steps: int,
             trigger: str | None, text_encoder_lora: bool) -> dict[str, Any]:
    weights = f"{PEFT_SUBDIR}/" if config.adapter_type == "lokr" else LORA_WEIGHTS
    return {
        "family": config.FAMILY,
        "base_model": config.base_model,
        "adapter_type": config.adapter_kind,
        "rank": int(config.rank),
        "alpha": float(config.alpha),
        "target_modules": list(config.target_modules),
        "text_encoder_lora": bool(text_encoder_lora),
        "trigger": trigger,
        "resolution": int(config.resolution),
        "steps": int(steps),
        "dataset_hash": dataset_hash,
        "prediction_type": prediction_type,
        "weights": weights,
    }


def _save_peft_dir(target: Path, models: Mapping[str, torch.nn.Module]) -> None:
    """PEFT adapter layout per model: ``<target>/<model>/adapter_config.json`` + ``adapter_model.safetensors``."""
    from safetensors.torch import save_file

    for name, model in models.items():
        folder = target / name
        folder.mkdir(parents=True, exist_ok=True)
        model.peft_config["default"].save_pretrained(str(folder))
        save_file(adapter_state(model), str(folder / "adapter_model.safetensors"))


def save_adapter(lora_dir: Path, config: LoraTrainConfig, pipeline_cls: Any,
                 models: Mapping[str, torch.nn.Module], manifest_data: Mapping[str, Any]) -> Path:
    """Write the adapter directory (see module doc) through a temp dir, replacing any previous one.

    ``models`` maps the pipeline's component name ("unet", "transformer", "text_encoder") to the
    unwrapped model carrying the adapter; ``pipeline_cls`` is the diffusers pipeline class whose
    ``save_lora_weights`` writes the diffusers-native file.
    """
    lora_dir = Path(lora_dir)
    with atomic_dir(lora_dir) as tmp:
        if config.adapter_type == "lokr":
            _save_peft_dir(tmp / PEFT_SUBDIR, models)
        else:
            kwargs: dict[str, Any] = {}
            for name, model in models.items():
                kwargs[f"{name}_lora_layers"] = adapter_state(model, name)
                kwargs[f"{name}_lora_adapter_metadata"] = adapter_metadata(model)
            pipeline_cls.save_lora_weights(str(tmp), safe_serialization=True, **kwargs)
        atomic_write_json(tmp / MANIFEST, dict(manifest_data))
    return lora_dir
