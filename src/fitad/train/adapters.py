"""PEFT adapters: build them from the config, attach them, and write the adapter output directory.

Output contract (read by export, serving and evaluation)::

    OUT_DIR/lora/pytorch_lora_weights.safetensors   LoRA/DoRA, diffusers-native (pipe.load_lora_weights(dir))
    OUT_DIR/lora/peft/                              LoKr: adapter_config.json + adapter_model.safetensors
    OUT_DIR/lora/fitad_lora.json                    what was trained (family, base, rank, alpha, clip skip, ...)

LoKr is not a LoRA that diffusers' loaders accept, so it is stored in PEFT's own adapter format
(the layout ``PeftModel.save_pretrained`` writes) and ``fitad_lora.json`` says so in ``weights``.

Besides the adapter's shape, ``fitad_lora.json`` records what export metadata needs (:mod:`fitad.lora.metadata`):
``clip_skip`` (SD1.5 family, A1111 convention; null for FLUX), ``training`` (the training config as used),
``run`` (start/finish time, session id, resolved mixed precision, process count) and ``dataset`` (image count,
kohya-style caption tag frequencies per folder, buckets).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from fitad.fsutil import atomic_dir, atomic_write_json
from fitad.config import ConfigError, to_dict
from fitad.lora.format import INFO_FILE as MANIFEST, PEFT_DIR as PEFT_SUBDIR, WEIGHTS_FILE as LORA_WEIGHTS
from fitad.lora.metadata import tag_frequency
from fitad.train.config import LoraTrainConfig

if TYPE_CHECKING:
    from fitad.train.data import TrainDataset


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


def dataset_folder(dataset: "TrainDataset", image_path: Path) -> str:
    """The folder name an image is counted under (kohya: the image folder's name).

    Images directly in ``DATASET_DIR`` or in the prep layout's ``DATASET_DIR/images`` count under the dataset
    folder's own name; images in other sub-folders under that sub-folder's name.
    """
    root = Path(dataset.root).resolve()
    folder = Path(image_path).resolve().parent
    return root.name if folder in (root, root / "images") else folder.name


def dataset_record(dataset: "TrainDataset") -> dict[str, Any]:
    """Image count, folders, caption tag frequencies (kohya's rule) and buckets of the training set."""
    captions: dict[str, list[str]] = {}
    for example in dataset.examples:
        captions.setdefault(dataset_folder(dataset, example.image_path), []).append(example.caption)
    buckets = Counter(tuple(t) for t in dataset.targets)
    errors = [abs(t[0] / t[1] - ex.size[0] / ex.size[1]) for ex, t in zip(dataset.examples, dataset.targets)]
    return {
        "name": Path(dataset.root).resolve().name,
        "num_images": len(dataset),
        "dirs": {folder: {"n_repeats": 1, "img_count": len(items)} for folder, items in captions.items()},
        "tag_frequency": tag_frequency(captions),
        "bucket_info": {"buckets": {str(i): {"resolution": list(size), "count": count}
                                    for i, (size, count) in enumerate(sorted(buckets.items()))},
                        "mean_img_ar_error": sum(errors) / len(errors) if errors else 0.0},
    }


def manifest(config: LoraTrainConfig, *, prediction_type: str, dataset_hash: str, steps: int,
             trigger: str | None, text_encoder_lora: bool, dataset: "TrainDataset | None" = None,
             accelerator: Any = None, started_at: float | None = None,
             gradient_checkpointing: bool | None = None) -> dict[str, Any]:
    """``fitad_lora.json`` (see the module doc); ``dataset``/``accelerator``/``started_at`` fill its records."""
    weights = f"{PEFT_SUBDIR}/" if config.adapter_type == "lokr" else LORA_WEIGHTS
    clip_skip = getattr(config, "clip_skip", None)
    run: dict[str, Any] = {"session_id": secrets.randbelow(2**32), "finished_at": time.time()}
    if started_at is not None:
        run["started_at"] = float(started_at)
    if accelerator is not None:
        run.update(mixed_precision=str(accelerator.mixed_precision), num_processes=int(accelerator.num_processes))
    if gradient_checkpointing is not None:  # what the run used ("auto" in the config resolves per device)
        run["gradient_checkpointing"] = bool(gradient_checkpointing)
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
        "clip_skip": int(clip_skip) if clip_skip is not None else None,
        "training": to_dict(config),
        "run": run,
        "dataset": dataset_record(dataset) if dataset is not None else {},
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
