"""Load a Fit-AD adapter into a diffusers pipeline, and read what an adapter file says about itself.

``load_lora_into_pipeline`` takes either a training output directory (``LORA_DIR``, diffusers-native) or an
exported ``.safetensors`` (kohya/WebUI or diffusers format, see :mod:`fitad.lora.export`):

* LoRA/DoRA directories and files load through diffusers' own ``pipe.load_lora_weights``, so what works here
  works for anyone using diffusers.
* LoKr (a PEFT folder, or a LyCORIS-named file) is injected with PEFT directly: diffusers' SD1.5 loader does
  not read LyCORIS LoKr names. Module names are resolved against the pipeline's own modules, so the '.' -> '_'
  of the kohya names is undone exactly.
* A diffusers-native adapter with DoRA on the text encoder: its magnitudes are saved as
  ``….lora_magnitude_vector``, which diffusers 0.42 + transformers 5 do not match (they re-initialise them
  silently); they are renamed ``….lora_magnitude_vector.weight`` and loaded through the same diffusers loaders.
* An SD1.5 kohya file whose modules have different alphas: diffusers' kohya loader applies one alpha to all of
  them, so such a file is converted here (each module's alpha / rank multiplied into lora_A) and then handed to
  diffusers in its native form.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

from fitad.lora.files import adapter_configs, group_lora_modules, load_safetensors, read_lora_info, read_peft_dir
from fitad.lora.format import (ADAPTER_METADATA_KEY, DENOISER, FAMILIES, INFO_FILE, PEFT_DIR, WEIGHTS_FILE,
                               LoraFormatError, bake_lokr_alpha, exported_module_name, fix_text_encoder_dora_keys,
                               has_text_encoder_dora, kohya_alpha, most_common)

DEFAULT_ADAPTER_NAME = "fitad"
_FAMILY_FROM_BASE_VERSION = {"sd_v1": "sd15", "flux1": "flux"}


class LoraLoadError(ValueError):
    """The adapter cannot be loaded into this pipeline; the message names the file and the reason."""


@dataclasses.dataclass
class LoraMeta:
    """What an adapter directory or file records about itself (None where it does not say)."""

    path: Path
    format: str                 # "dir", "kohya", "diffusers" or "unknown" (a file not written by fitad)
    family: str | None
    adapter_type: str
    base_model: str | None
    trigger: str | None
    rank: int | None
    alpha: float | None
    header: dict[str, str]      # the raw safetensors header (files) or fitad_lora.json (directories)
    clip_skip: int | None = None  # the clip skip it was trained with (SD1.5 family; A1111 convention)


# ---------------------------------------------------------------- metadata

def _family_from_keys(keys: list[str]) -> str | None:
    if any(k.startswith(("lora_unet_", "unet.")) for k in keys):
        return "sd15"
    if any(k.startswith(("transformer.", "lora_transformer_", "lycoris_")) for k in keys):
        return "flux"
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_lora_meta(path: str | os.PathLike) -> LoraMeta:
    """Describe ``path``: a LORA_DIR (fitad_lora.json + weights header) or an exported ``.safetensors``.

    Raises LoraLoadError naming the file when it is missing, corrupt or not an adapter.
    """
    try:
        return _read_lora_meta(Path(path))
    except LoraFormatError as exc:
        raise LoraLoadError(str(exc)) from None


def _read_lora_meta(path: Path) -> LoraMeta:
    if path.is_dir():
        info = read_lora_info(path)
        weights = path / WEIGHTS_FILE
        if info is None and not weights.is_file():
            raise LoraLoadError(f"{path}: neither {INFO_FILE} nor {WEIGHTS_FILE} found; not a LoRA directory")
        rank = info.rank if info else None
        alpha = info.alpha if info else None
        family = info.family if info else None
        if weights.is_file() and (rank is None or alpha is None or family is None):
            tensors, header = load_safetensors(weights)
            modules = group_lora_modules(tensors, weights)
            configs = adapter_configs(header, weights)
            ranks = [int(p["lora_A.weight"].shape[0]) for p in modules.values()]
            if modules:
                rank = rank if rank is not None else most_common(ranks)
                alpha = alpha if alpha is not None else most_common(
                    kohya_alpha(m, r, configs.get(c), None) for (c, m), r in zip(modules, ranks))
            family = family or _family_from_keys(list(tensors))
        raw = json.loads((path / INFO_FILE).read_text(encoding="utf-8")) if info else {}
        return LoraMeta(path=path, format="dir", family=family,
                        adapter_type=info.adapter_type if info else "lora",
                        base_model=info.base_model if info else None, trigger=info.trigger if info else None,
                        rank=rank, alpha=alpha, header={k: str(v) for k, v in raw.items()},
                        clip_skip=info.clip_skip if info else None)
    if not path.is_file():
        raise LoraLoadError(f"{path}: no such LoRA file or directory")
    if path.suffix != ".safetensors":
        raise LoraLoadError(f"{path}: expected a .safetensors file or a LoRA directory")
    keys_only, header = load_safetensors(path, keys_only=True)
    keys = list(keys_only)
    family = header.get("fitad_family") or _FAMILY_FROM_BASE_VERSION.get(header.get("ss_base_model_version", ""))
    family = family if family in FAMILIES else _family_from_keys(keys)
    if "fitad_format" in header:
        fmt = header["fitad_format"]
    elif any(".lora_down." in k or ".lokr_" in k for k in keys):
        fmt = "kohya"
    elif any(".lora_A." in k for k in keys):
        fmt = "diffusers"
    else:
        fmt = "unknown"
    adapter_type = header.get("fitad_adapter_type") or (
        "lokr" if any(".lokr_" in k for k in keys) else
        "dora" if any("magnitude" in k or "dora_scale" in k for k in keys) else "lora")
    rank = header.get("ss_network_dim")
    return LoraMeta(path=path, format=fmt, family=family, adapter_type=adapter_type,
                    base_model=header.get("fitad_base_model") or header.get("ss_sd_model_name") or None,
                    trigger=header.get("fitad_trigger") or None,
                    rank=_int(rank), alpha=_float(header.get("ss_network_alpha")), header=header,
                    clip_skip=_int(header.get("ss_clip_skip")) or _int(header.get("modelspec.encoder_layer")))


# ---------------------------------------------------------------- pipeline helpers

def pipeline_family(pipe: Any) -> str:
    """``"flux"`` for pipelines with a transformer denoiser, ``"sd15"`` for UNet pipelines."""
    if getattr(pipe, "transformer", None) is not None:
        return "flux"
    if getattr(pipe, "unet", None) is not None:
        return "sd15"
    raise LoraLoadError(f"{type(pipe).__name__} has neither a unet nor a transformer to load a LoRA into")


def _components(pipe: Any, family: str) -> dict[str, Any]:
    names = (DENOISER[family], "text_encoder")
    return {name: getattr(pipe, name) for name in names if getattr(pipe, name, None) is not None}


def exported_module_names(model: Any, component: str, family: str) -> dict[str, str]:
    """Exported name (kohya ``lora_unet_…`` or FLUX ``transformer.…``) -> module path, for every layer of ``model``."""
    import torch

    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
    return {exported_module_name(family, component, name): name for name, module in model.named_modules()
            if name and isinstance(module, layers)}


def split_exported_key(key: str) -> tuple[str, str]:
    """``"lora_unet_x.lora_down.weight"`` -> ``("lora_unet_x", "lora_down.weight")``; ``"….alpha"``, ``"….lokr_w1"``."""
    for marker in (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B."):
        if marker in key:
            name, _, rest = key.partition(marker)
            return name, marker[1:] + rest
    name, _, suffix = key.rpartition(".")
    return name, suffix


def _resolve_modules(pipe: Any, family: str, tensors: Mapping[str, Any],
                     source: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Exported tensors -> ``{component: {module path: {suffix: tensor}}}`` using the pipeline's module names."""
    lookup: dict[str, tuple[str, str]] = {}
    for component, model in _components(pipe, family).items():
        for name, module_path in exported_module_names(model, component, family).items():
            lookup[name] = (component, module_path)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, tensor in tensors.items():
        name, suffix = split_exported_key(key)
        if name not in lookup:
            raise LoraLoadError(f"{source}: key {key!r} matches no layer of {type(pipe).__name__}; "
                                "was it exported for another base model?")
        component, module_path = lookup[name]
        out.setdefault(component, {}).setdefault(module_path, {})[suffix] = tensor
    return out


def _inject_peft(model: Any, config: Any, state: Mapping[str, Any], adapter_name: str, source: Path) -> None:
    """Add ``config`` as ``adapter_name`` to a diffusers or transformers model and load ``state`` into it."""
    from peft import set_peft_model_state_dict

    model.add_adapter(config, adapter_name=adapter_name)
    result = set_peft_model_state_dict(model, dict(state), adapter_name=adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lokr_" in k or "lora_" in k]
    if unexpected:
        raise LoraLoadError(f"{source}: {len(unexpected)} adapter weights did not fit the model, "
                            f"e.g. {unexpected[0]!r}")


def _lokr_config(state: Mapping[str, Any], config: Mapping[str, Any] | None) -> Any:
    from peft import LoKrConfig

    if config is not None:
        fields = {f.name for f in dataclasses.fields(LoKrConfig)}
        return LoKrConfig(**{k: v for k, v in config.items() if k in fields})
    # The factor shapes determine PEFT's LoKr layout; diffusers infers it the same way for its own loader.
    from diffusers.utils.peft_utils import _create_lokr_config

    return _create_lokr_config(dict(state), None)


def _load_lokr_file(pipe: Any, family: str, tensors: Mapping[str, Any], adapter_name: str,
                    source: Path) -> None:
    modules = _resolve_modules(pipe, family, tensors, source)
    for component, by_module in modules.items():
        state = {f"{path}.{suffix}": tensor for path, params in by_module.items()
                 for suffix, tensor in bake_lokr_alpha(params).items()}
        model = getattr(pipe, component)
        _inject_peft(model, _lokr_config(state, None), state, adapter_name, source)


def _load_lokr_dir(pipe: Any, family: str, lora_dir: Path, adapter_name: str) -> None:
    try:
        components = read_peft_dir(lora_dir, family)
    except LoraFormatError as exc:
        raise LoraLoadError(str(exc)) from None
    for component, (config, state) in components.items():
        model = getattr(pipe, component, None)
        if model is None:
            raise LoraLoadError(f"{lora_dir / PEFT_DIR}: {type(pipe).__name__} has no {component}")
        _inject_peft(model, _lokr_config(state, config), state, adapter_name, lora_dir / PEFT_DIR)


def _kohya_alphas_differ(tensors: Mapping[str, Any]) -> bool:
    alphas = {float(v) for k, v in tensors.items() if k.endswith(".alpha")}
    return len(alphas) > 1


def _load_kohya_per_module_alpha(pipe: Any, tensors: Mapping[str, Any], adapter_name: str,
                                 source: Path) -> None:
    """SD1.5 kohya file with per-module alphas -> diffusers-native dict with alpha / rank in lora_A."""
    modules = _resolve_modules(pipe, "sd15", tensors, source)
    native = {}
    for component, by_module in modules.items():
        for path, params in by_module.items():
            down, up = params["lora_down.weight"], params["lora_up.weight"]
            alpha = float(params["alpha"]) if "alpha" in params else down.shape[0]
            native[f"{component}.{path}.lora_A.weight"] = down * (alpha / down.shape[0])
            native[f"{component}.{path}.lora_B.weight"] = up
    pipe.load_lora_weights(native, adapter_name=adapter_name)


def _load_native(pipe: Any, family: str, weights: Path, adapter_name: str) -> None:
    """A diffusers-native file: ``pipe.load_lora_weights``, or its two steps with text-encoder DoRA keys fixed."""
    keys_only, _ = load_safetensors(weights, keys_only=True)
    if not has_text_encoder_dora(keys_only):  # the usual case: diffusers reads the file itself
        pipe.load_lora_weights(str(weights), adapter_name=adapter_name)
        return
    tensors, header = load_safetensors(weights)
    state = fix_text_encoder_dora_keys(tensors)
    metadata = json.loads(header[ADAPTER_METADATA_KEY]) if header.get(ADAPTER_METADATA_KEY) else None
    denoiser = DENOISER[family]
    load_denoiser = pipe.load_lora_into_unet if family == "sd15" else pipe.load_lora_into_transformer
    load_denoiser(state, network_alphas=None, adapter_name=adapter_name, metadata=metadata, _pipeline=pipe,
                  **{denoiser: getattr(pipe, denoiser)})
    pipe.load_lora_into_text_encoder(state, network_alphas=None, text_encoder=pipe.text_encoder,
                                     prefix="text_encoder", lora_scale=1.0,
                                     adapter_name=adapter_name, metadata=metadata, _pipeline=pipe)


# ---------------------------------------------------------------- entry point

def load_lora_into_pipeline(pipe: Any, path_or_dir: str | os.PathLike, scale: float = 1.0,
                            adapter_name: str = DEFAULT_ADAPTER_NAME) -> str:
    """Load an adapter (LORA_DIR or exported ``.safetensors``) into ``pipe`` as ``adapter_name``.

    The adapter is made the pipeline's only active adapter, weighted by ``scale``. Returns ``adapter_name``.
    Raises LoraLoadError (naming the file) for missing/corrupt files or a family that does not fit ``pipe``.
    """
    path = Path(path_or_dir)
    try:
        meta = read_lora_meta(path)
        family = pipeline_family(pipe)
        if meta.family is not None and meta.family != family:
            raise LoraLoadError(f"{path}: a {meta.family} adapter cannot be loaded into {type(pipe).__name__} "
                                f"(a {family} pipeline)")
        if meta.format == "dir":
            if meta.adapter_type == "lokr":
                _load_lokr_dir(pipe, family, path, adapter_name)
            else:
                _load_native(pipe, family, path / WEIGHTS_FILE, adapter_name)
        elif meta.adapter_type == "lokr" or (family == "sd15" and meta.format == "kohya"):
            tensors, _ = load_safetensors(path)  # these paths need the tensors themselves
            if meta.adapter_type == "lokr":
                _load_lokr_file(pipe, family, tensors, adapter_name, path)
            elif _kohya_alphas_differ(tensors):
                _load_kohya_per_module_alpha(pipe, tensors, adapter_name, path)
            else:
                pipe.load_lora_weights(str(path), adapter_name=adapter_name)
        elif meta.format == "diffusers":
            _load_native(pipe, family, path, adapter_name)
        else:
            pipe.load_lora_weights(str(path), adapter_name=adapter_name)
    except LoraLoadError:
        raise
    except LoraFormatError as exc:
        raise LoraLoadError(str(exc)) from None
    except (ValueError, KeyError, RuntimeError) as exc:  # diffusers/PEFT rejecting the weights
        raise LoraLoadError(f"{path}: could not load the adapter into {type(pipe).__name__}: "
                            f"{type(exc).__name__}: {exc}") from exc
    pipe.set_adapters([adapter_name], adapter_weights=[float(scale)])
    return adapter_name


__all__ = ["LoraLoadError", "LoraMeta", "load_lora_into_pipeline", "read_lora_meta", "pipeline_family",
           "exported_module_names", "DEFAULT_ADAPTER_NAME"]
