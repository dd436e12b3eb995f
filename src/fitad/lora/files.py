"""Reading an adapter directory and safetensors files (and writing them atomically), for export and loading.

Every failure raises :class:`~fitad.lora.format.LoraFormatError` (``ExportError``) naming the file and the problem.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from fitad.fsutil import atomic_file
from fitad.lora.format import (ADAPTER_METADATA_KEY, ADAPTER_TYPES, DENOISER, FAMILIES, INFO_FILE, LORA_PARAM_RE,
                               PEFT_CONFIG_FILE, PEFT_DIR, PEFT_WEIGHTS_FILE, TRAIN_SUMMARY_FILE, LoraFormatError,
                               split_component)

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass
class LoraInfo:
    """``fitad_lora.json``: what training recorded about the adapter.

    ``training`` is the training config as training used it, ``run`` what the run itself was (start/finish time,
    session id, mixed precision, process count), ``dataset`` what it trained on (image count, caption tag
    frequencies, buckets); older manifests lack them (empty dicts).
    """

    family: str
    base_model: str = ""
    adapter_type: str = "lora"
    rank: int | None = None
    alpha: float | None = None
    target_modules: list[str] = dataclasses.field(default_factory=list)
    text_encoder_lora: bool = False
    trigger: str | None = None
    resolution: int | None = None
    steps: int | None = None
    dataset_hash: str | None = None
    prediction_type: str | None = None
    clip_skip: int | None = None      # A1111 convention (1 = last CLIP layer); None for FLUX
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    run: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_lora_info(lora_dir: str | os.PathLike) -> LoraInfo | None:
    """Parse ``LORA_DIR/fitad_lora.json``; None if absent. Bad JSON or values raise ExportError naming the file."""
    path = Path(lora_dir) / INFO_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoraFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise LoraFormatError(f"{path}: expected a JSON object")
    known = {f.name for f in dataclasses.fields(LoraInfo)}
    data = {k: v for k, v in raw.items() if k in known}  # newer training versions may add fields
    if "family" not in data:
        raise LoraFormatError(f"{path}: field 'family' is missing (one of {list(FAMILIES)})")
    if data["family"] not in FAMILIES:
        raise LoraFormatError(f"{path}: family = {data['family']!r} is unknown; expected one of {list(FAMILIES)}")
    if data.get("adapter_type", "lora") not in ADAPTER_TYPES:
        raise LoraFormatError(f"{path}: adapter_type = {data['adapter_type']!r} is unknown; "
                              f"expected one of {list(ADAPTER_TYPES)}")
    for key, kind in (("rank", int), ("alpha", (int, float)), ("resolution", int), ("steps", int),
                      ("clip_skip", int)):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise LoraFormatError(f"{path}: {key} = {value!r} is not a number")
    for key in ("training", "run", "dataset"):
        if not isinstance(data.get(key) or {}, dict):
            raise LoraFormatError(f"{path}: {key} = {data[key]!r} is not a JSON object")
        data[key] = dict(data.get(key) or {})
    if data.get("alpha") is not None:
        data["alpha"] = float(data["alpha"])
    data["target_modules"] = list(data.get("target_modules") or [])
    return LoraInfo(**data)


def read_train_summary(lora_dir: str | os.PathLike) -> dict[str, Any]:
    """``train_summary.json`` that training writes beside ``LORA_DIR`` (``RUN/lora`` -> ``RUN/``); {} if absent/bad."""
    path = Path(lora_dir).resolve().parent / TRAIN_SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_safetensors(path: str | os.PathLike, keys_only: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; unreadable or corrupt files raise ExportError.

    ``keys_only`` reads just the header: the dict maps each key to None (no tensor is loaded).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LoraFormatError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: None if keys_only else handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for truncated/garbled files
        raise LoraFormatError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    return tensors, metadata


def save_safetensors_atomic(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str],
                            out: str | os.PathLike) -> Path:
    """Write a safetensors file via a temp file in the same directory and ``os.replace`` (never half-written)."""
    from safetensors.torch import save_file

    out = Path(out)
    with atomic_file(out) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))
    return out


def group_lora_modules(state: Mapping[str, "torch.Tensor"], source: Path) -> dict[tuple[str, str], dict]:
    """Group a diffusers-native LoRA state dict by ``(component, module path)`` -> ``{param: tensor}``."""
    modules: dict[tuple[str, str], dict] = collections.defaultdict(dict)
    for key, tensor in state.items():
        component, rest = split_component(key)
        match = LORA_PARAM_RE.match(rest)
        if not rest or match is None:
            raise LoraFormatError(f"{source}: key {key!r} is not a diffusers LoRA key "
                                  "('<component>.<module>.lora_A.weight' / '.lora_B.weight')")
        param = match["param"].replace(".weight", "") if "magnitude" in match["param"] else match["param"]
        modules[(component, match["module"])][param] = tensor
    for (component, module), params in modules.items():
        missing = {"lora_A.weight", "lora_B.weight"} - set(params)
        if missing:
            raise LoraFormatError(f"{source}: module {component}.{module} lacks {sorted(missing)}")
    return dict(modules)


def adapter_configs(metadata: Mapping[str, str], source: Path) -> dict[str, dict[str, Any]]:
    """Per-component PEFT config from diffusers' ``lora_adapter_metadata`` header (``"unet.r"`` -> ``{"unet": {"r"}}``)."""
    raw = metadata.get(ADAPTER_METADATA_KEY)
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LoraFormatError(f"{source}: header {ADAPTER_METADATA_KEY!r} is not valid JSON ({exc})") from None
    out: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for key, value in flat.items():
        component, field = split_component(key)
        if field:
            out[component][field] = value
    return dict(out)


def read_peft_dir(lora_dir: Path, family: str) -> dict[str, tuple[dict[str, Any], dict[str, "torch.Tensor"]]]:
    """``LORA_DIR/peft`` -> ``{component: (adapter_config, state without the PEFT 'base_model.model.' prefix)}``."""
    root = Path(lora_dir) / PEFT_DIR
    folders: dict[str, Path] = {}
    if (root / PEFT_CONFIG_FILE).is_file():
        folders[DENOISER[family]] = root
    for component in ("unet", "transformer", "text_encoder"):
        if (root / component / PEFT_CONFIG_FILE).is_file():
            folders[component] = root / component
    if not folders:
        raise LoraFormatError(f"{root}: no PEFT adapter ({PEFT_CONFIG_FILE} directly or in unet/, transformer/, "
                              "text_encoder/); LoKr adapters are read from there")
    out = {}
    for component, folder in folders.items():
        config_path = folder / PEFT_CONFIG_FILE
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoraFormatError(f"{config_path}: not valid JSON ({exc})") from None
        if str(config.get("peft_type", "")).upper() != "LOKR":
            raise LoraFormatError(f"{config_path}: peft_type = {config.get('peft_type')!r}, expected 'LOKR'")
        state, _ = load_safetensors(folder / PEFT_WEIGHTS_FILE)
        state = {k.removeprefix("base_model.model."): v for k, v in state.items()}
        out[component] = (config, state)
    return out
