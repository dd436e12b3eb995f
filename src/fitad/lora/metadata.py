"""The header metadata of an exported adapter: kohya's ``ss_*`` keys, A1111's ``sshs_*`` hashes, ``modelspec.*``.

What LoRA tools show and filter on (A1111/Forge's LoRA cards and metadata editor, ComfyUI, kohya's GUI, CivitAI's
uploader):

* ``ss_*`` -- the keys kohya-ss sd-scripts writes while training (all values are ``str()`` of the Python value,
  so booleans are ``"True"``/``"False"`` and JSON-valued keys hold JSON text): network (module, dim, alpha,
  args), base model, training (learning rate, optimizer, scheduler, warm-up, seed, precision, batch sizes,
  steps, epochs, noise offset, Min-SNR gamma, clip skip, ...), dataset (image count, folders, caption tag
  frequencies, buckets) and when training started and finished. Settings the adapter was not trained with are
  left out rather than guessed.
* ``sshs_model_hash`` / ``sshs_legacy_hash`` -- the hashes A1111 and sd-webui-additional-networks would compute
  for the file, precomputed the way kohya does: the tensors are serialised with only the ``ss_*`` keys as
  metadata; the model hash is the sha256 of the data after the header, the legacy hash the first 8 hex digits of
  the sha256 of the 0x10000 bytes at offset 0x100000.
* ``modelspec.*`` -- Stability AI's model spec 1.0.0 (architecture ``stable-diffusion-v1/lora`` or
  ``flux-1-dev/lora``, implementation, title, date, resolution, trigger phrase, prediction type, encoder layer
  = clip skip, and ``hash_sha256`` of the data after the header).
* ``fitad_*`` -- Fit-AD's own provenance (format, family, adapter type, trigger, ...).

``ss_sd_model_name`` and ``fitad_base_model`` name the base model without leaking a local path: a hub ID stays
as it is, a path becomes its last component.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from fitad.lora.format import BASE_MODEL_VERSION

if TYPE_CHECKING:
    import torch

    from fitad.lora.files import LoraInfo

MODELSPEC_VERSION = "1.0.0"
IMPLEMENTATION = {"sd15": "diffusers", "flux": "https://github.com/black-forest-labs/flux"}
DEFAULT_RESOLUTION = {"sd15": 512, "flux": 1024}
OPTIMIZER_CLASS = {"adamw": "torch.optim.AdamW", "adamw8bit": "bitsandbytes.optim.AdamW8bit"}
LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_LENGTH = 0x10000
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------- small rules

def caption_tags(caption: str) -> list[str]:
    """kohya's tags of a caption: split at ',', stripped, lower-cased, empty ones dropped."""
    return [tag.strip().lower() for tag in caption.split(",") if tag.strip()]


def tag_frequency(captions_by_folder: Mapping[str, Iterable[str]]) -> dict[str, dict[str, int]]:
    """``{folder: {tag: images whose caption has it (counted per occurrence, as kohya does)}}``."""
    out: dict[str, dict[str, int]] = {}
    for folder, captions in captions_by_folder.items():
        counts = out.setdefault(folder, {})
        for caption in captions:
            for tag in caption_tags(caption):
                counts[tag] = counts.get(tag, 0) + 1
    return out


def public_model_name(base_model: str | None) -> str:
    """The base model's name for metadata: a hub ID (``org/name``) or zoo name as is, a local path's last part."""
    name = str(base_model or "").strip()
    if not name:
        return ""
    bare = "/" not in name and "\\" not in name
    if bare or (_HUB_ID_RE.match(name) and not Path(name).exists()):
        return name
    return re.split(r"[\\/]", name.rstrip("/\\"))[-1] or name


def architecture(family: str, base_model: str | None) -> str:
    """``modelspec.architecture`` of a LoRA/LyCORIS adapter for ``family`` (FLUX: dev/schnell from the name)."""
    if family == "sd15":
        return "stable-diffusion-v1/lora"
    name = public_model_name(base_model).lower()
    variant = "flux-1-schnell" if "schnell" in name else "flux-1-dev" if "dev" in name else "flux-1"
    return f"{variant}/lora"


def _s(value: Any) -> str:
    """kohya's rule for every ``ss_*`` value: ``str(value)`` (True -> "True", None -> "None", (64, 64) -> "(64, 64)")."""
    return str(value)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.timezone.utc).isoformat()


# ---------------------------------------------------------------- key groups

def _network(info: "LoraInfo", adapter_type: str, rank: int, alpha: float) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "ss_network_module": "lycoris.kohya" if adapter_type == "lokr" else "networks.lora",
        "ss_network_dim": rank,
        "ss_network_alpha": float(alpha),
    }
    if adapter_type == "lokr":
        meta["ss_network_args"] = json.dumps({"algo": "lokr"})
    if "lora_dropout" in info.training:
        meta["ss_network_dropout"] = info.training["lora_dropout"]
    return meta


def _training(info: "LoraInfo", summary: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings (``ss_learning_rate`` ... ``ss_clip_skip``) from the manifest's config dump and run record."""
    cfg, run = info.training, info.run
    meta: dict[str, Any] = {}
    if info.clip_skip is not None:
        meta["ss_clip_skip"] = info.clip_skip
    if run.get("session_id") is not None:
        meta["ss_session_id"] = run["session_id"]
    for key in ("started_at", "finished_at"):
        if run.get(key) is not None:
            meta[f"ss_training_{key}"] = float(run[key])
    precision = run.get("mixed_precision") or summary.get("mixed_precision") or (
        cfg.get("mixed_precision") if cfg.get("mixed_precision") not in (None, "auto") else None)
    if precision:
        meta["ss_mixed_precision"] = precision
        meta["ss_full_fp16"] = False
    if not cfg:
        return meta
    lr = cfg.get("learning_rate")
    meta.update({"ss_learning_rate": lr, "ss_unet_lr": lr})
    if info.text_encoder_lora:
        meta["ss_text_encoder_lr"] = lr
    optimizer = cfg.get("optimizer")
    if optimizer:
        args = ",".join(f"{k}={v}" for k, v in (
            ("betas", (cfg.get("adam_beta1"), cfg.get("adam_beta2"))), ("eps", cfg.get("adam_epsilon")),
            ("weight_decay", cfg.get("weight_decay"))) if v is not None and v != (None, None))
        meta["ss_optimizer"] = OPTIMIZER_CLASS.get(optimizer, optimizer) + (f"({args})" if args else "")
    simple = {"lr_scheduler": "ss_lr_scheduler", "lr_warmup_steps": "ss_lr_warmup_steps", "seed": "ss_seed",
              "gradient_checkpointing": "ss_gradient_checkpointing",
              "gradient_accumulation": "ss_gradient_accumulation_steps", "batch_size": "ss_batch_size_per_device",
              "cache_latents": "ss_cache_latents", "max_grad_norm": "ss_max_grad_norm",
              "caption_dropout": "ss_caption_dropout_rate", "random_flip": "ss_flip_aug",
              "aspect_buckets": "ss_enable_bucket",
              # SD1.5 family
              "noise_offset": "ss_noise_offset", "snr_gamma": "ss_min_snr_gamma",
              # FLUX family (kohya's flux_train_network names)
              "timestep_sampling": "ss_timestep_sampling", "sigmoid_scale": "ss_sigmoid_scale",
              "logit_mean": "ss_logit_mean", "logit_std": "ss_logit_std",
              "loss_weighting": "ss_weighting_scheme", "guidance_scale": "ss_guidance_scale"}
    for field, key in simple.items():
        if field in cfg:
            meta[key] = cfg[field]
    for field in ("cache_latents", "random_flip", "aspect_buckets"):
        key = simple[field]
        if key in meta:
            meta[key] = bool(meta[key])
    # what the run used: "auto" in the config is decided per device when training starts
    used = run.get("gradient_checkpointing", summary.get("gradient_checkpointing"))
    if isinstance(used, bool):
        meta["ss_gradient_checkpointing"] = used
    elif not isinstance(cfg.get("gradient_checkpointing"), bool):
        meta.pop("ss_gradient_checkpointing", None)
    if "allow_upscale" in cfg:
        meta["ss_bucket_no_upscale"] = not cfg["allow_upscale"]
    if "batch_size" in cfg:
        meta["ss_total_batch_size"] = (int(cfg["batch_size"]) * int(cfg.get("gradient_accumulation") or 1)
                                       * int(run.get("num_processes") or 1))
    # fitad never shuffles, colour-augments, randomly crops or keeps tokens: say so as kohya would
    meta.update({"ss_shuffle_caption": False, "ss_keep_tokens": 0, "ss_color_aug": False,
                 "ss_random_crop": False})
    return meta


def _dataset(info: "LoraInfo", summary: Mapping[str, Any]) -> dict[str, Any]:
    data = info.dataset
    meta: dict[str, Any] = {}
    images = data.get("num_images", summary.get("dataset_size"))
    if images is not None:
        meta.update({"ss_num_train_images": int(images), "ss_num_reg_images": 0})
        batch = int(info.training.get("batch_size") or 0)
        if batch and images:
            processes = int(info.run.get("num_processes") or 1)
            accumulation = int(info.training.get("gradient_accumulation") or 1)
            per_epoch = math.ceil(int(images) / (batch * processes))
            meta["ss_num_batches_per_epoch"] = per_epoch
            if info.steps:
                epochs = math.ceil(info.steps * accumulation / per_epoch)
                meta.update({"ss_num_epochs": epochs, "ss_epoch": epochs})
    if data.get("dirs"):
        meta.update({"ss_dataset_dirs": json.dumps(data["dirs"]), "ss_reg_dataset_dirs": json.dumps({})})
    if data.get("tag_frequency"):
        meta["ss_tag_frequency"] = json.dumps(data["tag_frequency"])
    if data.get("bucket_info"):
        meta["ss_bucket_info"] = json.dumps(data["bucket_info"])
    return meta


def _modelspec(info: "LoraInfo", adapter_type: str, title: str, timestamp: float) -> dict[str, str]:
    from fitad import __version__

    resolution = info.resolution or DEFAULT_RESOLUTION[info.family]
    meta = {
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": architecture(info.family, info.base_model),
        "modelspec.implementation": IMPLEMENTATION[info.family],
        "modelspec.implementation_version": f"fitad/{__version__}",
        "modelspec.title": title,
        "modelspec.date": _iso(timestamp),
        "modelspec.resolution": f"{resolution}x{resolution}",
    }
    model = public_model_name(info.base_model)
    if model:
        kind = {"lora": "LoRA", "dora": "DoRA", "lokr": "LoKr"}.get(adapter_type, adapter_type)
        meta["modelspec.description"] = f"{kind} adapter for {model}, trained with Fit-AD"
    if info.trigger:
        meta["modelspec.trigger_phrase"] = info.trigger
        meta["modelspec.usage_hint"] = f"Put the trigger word '{info.trigger}' in the prompt"
    if info.family == "sd15" and info.prediction_type:  # kohya writes none for FLUX (flow matching)
        meta["modelspec.prediction_type"] = "v" if info.prediction_type == "v_prediction" else info.prediction_type
    if info.clip_skip is not None:
        meta["modelspec.encoder_layer"] = str(info.clip_skip)
    return meta


def export_metadata(info: "LoraInfo", adapter_type: str, rank: int, alpha: float, output_name: str, fmt: str,
                    summary: Mapping[str, Any] | None = None, exported_at: float | None = None) -> dict[str, str]:
    """Header metadata (all strings) of an exported file, hashes not included (see :func:`add_hashes`).

    ``summary`` is ``train_summary.json`` (fills what older manifests lack); ``exported_at`` dates the file
    when the manifest has no training finish time.
    """
    import time

    summary = summary or {}
    finished = info.run.get("finished_at")
    timestamp = float(finished) if finished is not None else (exported_at if exported_at is not None
                                                               else time.time())
    model = public_model_name(info.base_model)
    meta: dict[str, Any] = {
        **_network(info, adapter_type, rank, alpha),
        "ss_base_model_version": BASE_MODEL_VERSION[info.family],
        "ss_output_name": output_name,
        "ss_sd_model_name": model,
    }
    if info.family == "sd15":
        meta["ss_v2"] = False
    if info.resolution:
        meta["ss_resolution"] = (info.resolution, info.resolution)
    if info.steps:
        meta["ss_max_train_steps"] = info.steps
        meta["ss_steps"] = info.steps
    meta.update(_training(info, summary))
    meta.update(_dataset(info, summary))
    out = {key: _s(value) for key, value in meta.items()}
    out.update(_modelspec(info, adapter_type, output_name, timestamp))
    out.update({
        "fitad_format": fmt,
        "fitad_family": info.family,
        "fitad_adapter_type": adapter_type,
        "fitad_base_model": model,
        "fitad_trigger": info.trigger or "",
        "fitad_text_encoder_lora": str(bool(info.text_encoder_lora)).lower(),
    })
    for key in ("dataset_hash", "prediction_type"):
        value = getattr(info, key)
        if value:
            out[f"fitad_{key}"] = str(value)
    return out


# ---------------------------------------------------------------- hashes

def safetensors_data_sha256(blob: bytes) -> str:
    """sha256 of a safetensors file's data section (after the 8-byte length and the JSON header)."""
    header_len = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(memoryview(blob)[8 + header_len:]).hexdigest()


def legacy_hash(blob: bytes) -> str:
    """A1111's old short hash: sha256 of the 0x10000 bytes at 0x100000, first 8 hex digits."""
    return hashlib.sha256(blob[LEGACY_HASH_OFFSET:LEGACY_HASH_OFFSET + LEGACY_HASH_LENGTH]).hexdigest()[:8]


def precalculated_hashes(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str]) -> tuple[str, str]:
    """``(sshs_model_hash, sshs_legacy_hash)`` as kohya precomputes them: over the file with only ``ss_*`` keys."""
    from safetensors.torch import save

    blob = save(dict(tensors), metadata={k: v for k, v in metadata.items() if k.startswith("ss_")})
    return safetensors_data_sha256(blob), legacy_hash(blob)


def add_hashes(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str]) -> dict[str, str]:
    """``metadata`` plus ``sshs_model_hash``, ``sshs_legacy_hash`` and ``modelspec.hash_sha256``."""
    model_hash, legacy = precalculated_hashes(tensors, metadata)
    out = dict(metadata)
    out.update({"sshs_model_hash": model_hash, "sshs_legacy_hash": legacy})
    if "modelspec.sai_model_spec" in out:
        out["modelspec.hash_sha256"] = f"0x{model_hash}"
    return out
