"""Export a trained adapter directory to one ``.safetensors`` file for WebUI (A1111/Forge), ComfyUI and diffusers.

Input (written by training), ``LORA_DIR``:

* ``pytorch_lora_weights.safetensors``: the diffusers-native LoRA state dict (``unet.…``/``transformer.…``/
  ``text_encoder.…`` keys with ``lora_A``/``lora_B``), its PEFT config in the ``lora_adapter_metadata`` header.
* ``fitad_lora.json``: family, base model, adapter type, rank, alpha, trigger word, …
* ``peft/`` (LoKr only): PEFT ``save_pretrained`` output, either directly (the denoiser) or one sub-folder per
  component (``peft/unet``, ``peft/transformer``, ``peft/text_encoder``).

``LORA_DIR`` itself is never modified: it stays the diffusers-native copy of the adapter.

Output key formats (``format="kohya"``):

SD1.5 family -- the kohya-ss sd-scripts names for SD1.x, which diffusers (its kohya converter), A1111 and
ComfyUI all read::

    lora_unet_<module path, '.' -> '_'>.lora_down.weight   = PEFT lora_A
    lora_unet_<module path, '.' -> '_'>.lora_up.weight     = PEFT lora_B
    lora_unet_<module path, '.' -> '_'>.alpha              = 0-dim float32, the module's alpha
    lora_te_text_model_<...>.{lora_down,lora_up}.weight, .alpha   (text encoder)

kohya scales a module by ``alpha / rank`` exactly as PEFT does, so ``.alpha`` holds the real alpha (for rsLoRA,
where PEFT scales by ``alpha / sqrt(rank)``, the equivalent ``alpha * sqrt(rank)``).

FLUX -- the ``transformer.``-prefixed diffusers/PEFT form with a per-module ``.alpha``::

    transformer.<module path>.lora_A.weight / .lora_B.weight / .alpha
    text_encoder.text_model.<module path>.lora_A.weight / .lora_B.weight / .alpha

diffusers' FLUX loader reads it natively (the ``.alpha`` keys become its network alphas) and ComfyUI/Forge map
``transformer.<diffusers path>`` keys (``lora_A``/``lora_B`` plus ``.alpha``) onto their fused FLUX weights.
The kohya FLUX form (``lora_unet_double_blocks_0_img_attn_qkv``) was not chosen: it needs q/k/v fused into one
block-diagonal LoRA (3x the rank, alpha rescaled), and diffusers' converter for it hard-codes FLUX.1-dev's widths
and block counts, so it neither round-trips exactly nor works for other FLUX-architecture models.

LoKr -- LyCORIS names (``<module>.lokr_w1``, ``lokr_w1_a``/``_b``, ``lokr_w2``/``lokr_w2_a``/``_b``,
``lokr_t2``, ``.alpha``) on the same module names as LoRA (``lora_unet_…``/``lora_te_…`` for SD, ``transformer.…``
for FLUX), which ComfyUI and A1111 read. LyCORIS readers scale by ``alpha / dim`` only when a factor is
rank-decomposed and by 1 otherwise; PEFT always scales by ``alpha / r``. So ``.alpha`` is written where the readers
apply it; otherwise the scale is multiplied into ``lokr_w1`` and no ``.alpha`` is written. diffusers 0.42 loads
neither SD1.5 nor FLUX.1 LoKr files (``fitad.lora.load`` does, through PEFT).

DoRA -- refused for the kohya format: kohya/LyCORIS carry the magnitude as ``.dora_scale``, but diffusers
(0.42) drops ``dora_scale`` keys when it loads such a file, so the export would not reproduce the adapter there.
``format="diffusers"`` keeps DoRA (``lora_magnitude_vector``), which diffusers loads.

``format="diffusers"`` writes the diffusers-native state dict (its PEFT config header kept) plus the
descriptive metadata below, as one file that ``pipe.load_lora_weights(file)`` reads. One rename: a text-encoder
DoRA magnitude is written as ``….lora_magnitude_vector.weight``, the name transformers' adapter loader expects;
under the native name (no ``.weight``) diffusers 0.42 + transformers 5 silently re-initialise it.

Metadata (strings, a safetensors requirement): ``ss_network_dim``, ``ss_network_alpha``, ``ss_network_module``,
``ss_base_model_version`` (``sd_v1``/``flux1``), ``ss_output_name``, ``ss_sd_model_name``, ``fitad_base_model``,
``fitad_trigger`` and the other ``fitad_*`` fields of ``fitad_lora.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

from fitad.fsutil import atomic_file
from fitad.config import check_choice

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
INFO_FILE = "fitad_lora.json"
PEFT_DIR = "peft"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # where diffusers keeps the PEFT config in the file header

FAMILIES = ("sd15", "flux")
ADAPTER_TYPES = ("lora", "dora", "lokr")
FORMATS = ("kohya", "diffusers")
DTYPES = ("keep", "float16", "bfloat16", "float32")
BASE_MODEL_VERSION = {"sd15": "sd_v1", "flux": "flux1"}
DENOISER = {"sd15": "unet", "flux": "transformer"}
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
LOKR_PARAMS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")

_LORA_PARAM_RE = re.compile(
    r"^(?P<module>.+)\.(?P<param>lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_magnitude_vector(?:\.weight)?)$")
_LOKR_PARAM_RE = re.compile(r"^(?P<module>.+)\.(?P<param>lokr_(?:w1|w2)(?:_a|_b)?|lokr_t2)$")


class ExportError(ValueError):
    """The adapter directory or file cannot be exported; the message names the file and what is wrong."""


# ---------------------------------------------------------------- config and records

@dataclasses.dataclass
class ExportConfig:
    """How ``fitad export`` writes the adapter (``export:`` section of params.yaml)."""

    SECTION: ClassVar[str] = "export"
    format: str = "kohya"        # kohya: WebUI/ComfyUI key names; diffusers: the native PEFT keys, one file
    dtype: str = "keep"          # weight dtype in the file; .alpha stays float32
    output_name: str | None = None  # ss_output_name; default: the output file's stem

    def __post_init__(self) -> None:
        check_choice(self.SECTION, "format", self.format, FORMATS)
        check_choice(self.SECTION, "dtype", self.dtype, DTYPES)


@dataclasses.dataclass
class LoraInfo:
    """``fitad_lora.json``: what training recorded about the adapter."""

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


@dataclasses.dataclass
class ExportResult:
    """What was written."""

    path: Path
    format: str
    family: str
    adapter_type: str
    key_count: int
    module_count: int
    rank: int
    alpha: float
    size_bytes: int

    def summary(self) -> str:
        return (f"wrote {self.path} ({self.format}, {self.family} {self.adapter_type}): {self.key_count} keys, "
                f"{self.module_count} modules, rank {self.rank}, alpha {self.alpha:g}, "
                f"{self.size_bytes / 2**20:.2f} MiB")


# ---------------------------------------------------------------- reading the adapter directory

def read_lora_info(lora_dir: str | os.PathLike) -> LoraInfo | None:
    """Parse ``LORA_DIR/fitad_lora.json``; None if absent. Bad JSON or values raise ExportError naming the file."""
    path = Path(lora_dir) / INFO_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ExportError(f"{path}: expected a JSON object")
    known = {f.name for f in dataclasses.fields(LoraInfo)}
    data = {k: v for k, v in raw.items() if k in known}  # newer training versions may add fields
    if "family" not in data:
        raise ExportError(f"{path}: field 'family' is missing (one of {list(FAMILIES)})")
    if data["family"] not in FAMILIES:
        raise ExportError(f"{path}: family = {data['family']!r} is unknown; expected one of {list(FAMILIES)}")
    if data.get("adapter_type", "lora") not in ADAPTER_TYPES:
        raise ExportError(f"{path}: adapter_type = {data['adapter_type']!r} is unknown; "
                          f"expected one of {list(ADAPTER_TYPES)}")
    for key, kind in (("rank", int), ("alpha", (int, float)), ("resolution", int), ("steps", int)):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ExportError(f"{path}: {key} = {value!r} is not a number")
    if data.get("alpha") is not None:
        data["alpha"] = float(data["alpha"])
    data["target_modules"] = list(data.get("target_modules") or [])
    return LoraInfo(**data)


def load_safetensors(path: str | os.PathLike, keys_only: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; unreadable or corrupt files raise ExportError.

    ``keys_only`` reads just the header: the dict maps each key to None (no tensor is loaded).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: None if keys_only else handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for truncated/garbled files
        raise ExportError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    return tensors, metadata


def split_component(key: str) -> tuple[str, str]:
    """``"unet.down_blocks.0…"`` -> ``("unet", "down_blocks.0…")``."""
    component, _, rest = key.partition(".")
    return component, rest


def group_lora_modules(state: Mapping[str, "torch.Tensor"], source: Path) -> dict[tuple[str, str], dict]:
    """Group a diffusers-native LoRA state dict by ``(component, module path)`` -> ``{param: tensor}``."""
    modules: dict[tuple[str, str], dict] = collections.defaultdict(dict)
    for key, tensor in state.items():
        component, rest = split_component(key)
        match = _LORA_PARAM_RE.match(rest)
        if not rest or match is None:
            raise ExportError(f"{source}: key {key!r} is not a diffusers LoRA key "
                              "('<component>.<module>.lora_A.weight' / '.lora_B.weight')")
        param = match["param"].replace(".weight", "") if "magnitude" in match["param"] else match["param"]
        modules[(component, match["module"])][param] = tensor
    for (component, module), params in modules.items():
        missing = {"lora_A.weight", "lora_B.weight"} - set(params)
        if missing:
            raise ExportError(f"{source}: module {component}.{module} lacks {sorted(missing)}")
    return dict(modules)


def adapter_configs(metadata: Mapping[str, str], source: Path) -> dict[str, dict[str, Any]]:
    """Per-component PEFT config from diffusers' ``lora_adapter_metadata`` header (``"unet.r"`` -> ``{"unet": {"r"}}``)."""
    raw = metadata.get(ADAPTER_METADATA_KEY)
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{source}: header {ADAPTER_METADATA_KEY!r} is not valid JSON ({exc})") from None
    out: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for key, value in flat.items():
        component, field = split_component(key)
        if field:
            out[component][field] = value
    return dict(out)


# ---------------------------------------------------------------- key mapping and alpha helpers

def fix_text_encoder_dora_keys(state: Mapping[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """Name text-encoder DoRA magnitudes ``….lora_magnitude_vector.weight`` (what transformers' loader expects)."""
    return {(f"{key}.weight" if key.startswith("text_encoder.") and key.endswith(".lora_magnitude_vector")
             else key): value for key, value in state.items()}


def has_text_encoder_dora(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("text_encoder.") and k.endswith(".lora_magnitude_vector") for k in state)


def kohya_module_name(component: str, module_path: str) -> str:
    """kohya/WebUI name of an SD1.5 module: ``lora_unet_`` / ``lora_te_text_model_`` + path with '.' -> '_'.

    transformers 5 flattened CLIPTextModel (no ``text_model.``); kohya names always carry it.
    """
    if component not in KOHYA_PREFIX:
        raise ExportError(f"component {component!r} has no kohya name (SD1.5 has {sorted(KOHYA_PREFIX)})")
    if component == "text_encoder" and not module_path.startswith("text_model."):
        module_path = "text_model." + module_path
    return KOHYA_PREFIX[component] + module_path.replace(".", "_")


def flux_module_name(component: str, module_path: str) -> str:
    """Name of a FLUX module in the exported file: ``transformer.<path>`` / ``text_encoder.text_model.<path>``."""
    if component not in ("transformer", "text_encoder"):
        raise ExportError(f"component {component!r} cannot be exported for FLUX (transformer, text_encoder only)")
    if component == "text_encoder" and not module_path.startswith("text_model."):
        module_path = "text_model." + module_path
    return f"{component}.{module_path}"


def pattern_value(patterns: Mapping[str, Any], module_path: str) -> Any | None:
    """Value of the first PEFT ``rank_pattern``/``alpha_pattern`` key that matches ``module_path``, else None.

    Same rule as PEFT: a key is a regex that must match the end of the dotted path at a '.' boundary.
    """
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module_path):
            return value
    return None


def kohya_alpha(module_path: str, rank: int, config: Mapping[str, Any] | None,
                default_alpha: float | None) -> float:
    """The alpha that makes a kohya reader (scale = alpha / rank) apply PEFT's scale to this module.

    ``config`` is the component's PEFT LoraConfig dict (lora_alpha, alpha_pattern, use_rslora); without it
    ``default_alpha`` (fitad_lora.json) is used, and without that alpha = rank (scale 1, diffusers' convention).
    """
    if config and config.get("lora_alpha") is not None:
        alpha = pattern_value(config.get("alpha_pattern") or {}, module_path)
        alpha = float(config["lora_alpha"] if alpha is None else alpha)
        if config.get("use_rslora"):
            alpha *= math.sqrt(rank)  # PEFT scales by alpha / sqrt(r)
        return alpha
    return float(rank if default_alpha is None else default_alpha)


def most_common(values: Iterable[Any]) -> Any:
    return collections.Counter(values).most_common(1)[0][0]


def _cast(tensor: "torch.Tensor", dtype: str) -> "torch.Tensor":
    import torch

    if dtype != "keep" and tensor.is_floating_point():
        tensor = tensor.to(getattr(torch, dtype))
    return tensor.detach().contiguous()


def _alpha_tensor(alpha: float) -> "torch.Tensor":
    import torch

    return torch.tensor(float(alpha), dtype=torch.float32)


# ---------------------------------------------------------------- converters

@dataclasses.dataclass
class _Converted:
    tensors: dict[str, "torch.Tensor"]
    ranks: list[int]
    alphas: list[float]


def convert_lora_to_kohya(modules: Mapping[tuple[str, str], dict], family: str,
                          configs: Mapping[str, Mapping[str, Any]], default_alpha: float | None,
                          dtype: str = "keep", source: Path | None = None) -> _Converted:
    """diffusers-native LoRA modules -> kohya (SD1.5) or ``transformer.`` + ``.alpha`` (FLUX) tensors."""
    tensors: dict[str, "torch.Tensor"] = {}
    ranks: list[int] = []
    alphas: list[float] = []
    owner: dict[str, str] = {}
    for (component, module_path), params in sorted(modules.items()):
        where = f"{source}: module {component}.{module_path}" if source else f"module {component}.{module_path}"
        if "lora_magnitude_vector" in params:
            raise ExportError(
                f"{where} is a DoRA module: kohya/LyCORIS files carry DoRA as '.dora_scale', which diffusers "
                "drops when loading, so the export would not reproduce the adapter. Use --format diffusers "
                "(keeps lora_magnitude_vector, which diffusers loads).")
        if "lora_B.bias" in params:
            raise ExportError(f"{where} has a LoRA bias (lora_bias=True), which the kohya format cannot carry")
        down, up = params["lora_A.weight"], params["lora_B.weight"]
        rank = int(down.shape[0])
        if up.shape[1] != rank:
            raise ExportError(f"{where}: lora_A has rank {rank} but lora_B has {up.shape[1]} columns")
        alpha = kohya_alpha(module_path, rank, configs.get(component), default_alpha)
        if family == "sd15":
            name = kohya_module_name(component, module_path)
            keys = (f"{name}.lora_down.weight", f"{name}.lora_up.weight")
        else:
            name = flux_module_name(component, module_path)
            keys = (f"{name}.lora_A.weight", f"{name}.lora_B.weight")
        if name in owner:  # kohya's '.' -> '_' is lossy; two paths must never share a name
            raise ExportError(f"{where} and {owner[name]} map to the same name {name!r}")
        owner[name] = f"{component}.{module_path}"
        tensors[keys[0]] = _cast(down, dtype)
        tensors[keys[1]] = _cast(up, dtype)
        tensors[f"{name}.alpha"] = _alpha_tensor(alpha)
        ranks.append(rank)
        alphas.append(alpha)
    if family == "sd15" and len(set(alphas)) > 1:
        log.warning("%s: modules have different alphas %s; A1111 and ComfyUI apply each module's .alpha, but "
                    "diffusers' kohya loader applies one alpha to all (fitad.lora.load handles this)",
                    source, sorted(set(alphas)))
    return _Converted(tensors, ranks, alphas)


def lokr_rank_alpha(module_path: str, config: Mapping[str, Any]) -> tuple[int, float]:
    """PEFT LoKr ``r`` and ``alpha`` of one module (rank_pattern / alpha_pattern applied)."""
    rank = pattern_value(config.get("rank_pattern") or {}, module_path)
    alpha = pattern_value(config.get("alpha_pattern") or {}, module_path)
    rank = int(config.get("r", 8) if rank is None else rank)
    alpha = float(config.get("alpha", 8.0) if alpha is None else alpha)
    return rank, alpha


def lokr_lycoris_tensors(params: Mapping[str, "torch.Tensor"], rank: int,
                         alpha: float) -> dict[str, "torch.Tensor"]:
    """One PEFT LoKr module -> LyCORIS tensors (suffix -> tensor) that LyCORIS readers scale like PEFT.

    PEFT: ``delta = kron(w1, w2) * alpha / r``. LyCORIS readers (ComfyUI, A1111, diffusers' LoKr converters):
    ``* alpha / dim`` when a factor is decomposed (``dim`` = its rank, PEFT's ``r``), ``* 1`` otherwise; in
    that case ``alpha / r`` is multiplied into the left factor and no ``alpha`` is written.
    """
    out = dict(params)
    if "lokr_w1_b" in params or "lokr_w2_b" in params:
        dim = params["lokr_w2_b"].shape[0] if "lokr_w2_b" in params else params["lokr_w1_b"].shape[0]
        if dim != rank:
            raise ExportError(f"LoKr factor rank {dim} differs from the config rank {rank}")
        out["alpha"] = _alpha_tensor(alpha)
    else:
        left = "lokr_w1" if "lokr_w1" in params else "lokr_w1_a"
        out[left] = params[left] * (alpha / rank)
    return out


def convert_lokr(components: Mapping[str, tuple[dict[str, Any], dict[str, "torch.Tensor"]]], family: str,
                 dtype: str = "keep", source: Path | None = None) -> _Converted:
    """PEFT LoKr state dicts (per component) -> LyCORIS-named tensors (see the module docstring)."""
    tensors: dict[str, "torch.Tensor"] = {}
    ranks: list[int] = []
    alphas: list[float] = []
    for component, (config, state) in sorted(components.items()):
        modules: dict[str, dict] = collections.defaultdict(dict)
        for key, tensor in state.items():
            match = _LOKR_PARAM_RE.match(key)
            if match is None:
                raise ExportError(f"{source}: key {key!r} of {component} is not a LoKr weight")
            modules[match["module"]][match["param"]] = tensor
        for module_path, params in sorted(modules.items()):
            rank, alpha = lokr_rank_alpha(module_path, config)
            if family == "sd15":
                name = kohya_module_name(component, module_path)
            else:
                name = flux_module_name(component, module_path)
            converted = lokr_lycoris_tensors(params, rank, alpha)
            for suffix, tensor in converted.items():
                tensors[f"{name}.{suffix}"] = tensor if suffix == "alpha" else _cast(tensor, dtype)
            ranks.append(rank)
            alphas.append(alpha)
    return _Converted(tensors, ranks, alphas)


def read_peft_dir(lora_dir: Path, family: str) -> dict[str, tuple[dict[str, Any], dict[str, "torch.Tensor"]]]:
    """``LORA_DIR/peft`` -> ``{component: (adapter_config, state without the PEFT 'base_model.model.' prefix)}``."""
    root = lora_dir / PEFT_DIR
    folders: dict[str, Path] = {}
    if (root / PEFT_CONFIG_FILE).is_file():
        folders[DENOISER[family]] = root
    for component in ("unet", "transformer", "text_encoder"):
        if (root / component / PEFT_CONFIG_FILE).is_file():
            folders[component] = root / component
    if not folders:
        raise ExportError(f"{root}: no PEFT adapter ({PEFT_CONFIG_FILE} directly or in unet/, transformer/, "
                          "text_encoder/); LoKr adapters are read from there")
    out = {}
    for component, folder in folders.items():
        config_path = folder / PEFT_CONFIG_FILE
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportError(f"{config_path}: not valid JSON ({exc})") from None
        if str(config.get("peft_type", "")).upper() != "LOKR":
            raise ExportError(f"{config_path}: peft_type = {config.get('peft_type')!r}, expected 'LOKR'")
        state, _ = load_safetensors(folder / PEFT_WEIGHTS_FILE)
        state = {k.removeprefix("base_model.model."): v for k, v in state.items()}
        out[component] = (config, state)
    return out


# ---------------------------------------------------------------- metadata and writing

def export_metadata(info: LoraInfo, adapter_type: str, rank: int, alpha: float, output_name: str,
                    fmt: str) -> dict[str, str]:
    """Header metadata (all strings): the kohya ``ss_*`` keys WebUI shows, plus ``fitad_*`` provenance."""
    meta = {
        "ss_network_module": "lycoris.kohya" if adapter_type == "lokr" else "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(alpha)),
        "ss_base_model_version": BASE_MODEL_VERSION[info.family],
        "ss_output_name": output_name,
        "ss_sd_model_name": info.base_model,
        "fitad_format": fmt,
        "fitad_family": info.family,
        "fitad_adapter_type": adapter_type,
        "fitad_base_model": info.base_model,
        "fitad_trigger": info.trigger or "",
        "fitad_text_encoder_lora": str(bool(info.text_encoder_lora)).lower(),
    }
    if adapter_type == "lokr":
        meta["ss_network_args"] = json.dumps({"algo": "lokr"})
    if info.family == "sd15":
        meta["ss_v2"] = "False"
    if info.resolution:
        meta["ss_resolution"] = f"({info.resolution}, {info.resolution})"
    if info.steps:
        meta["ss_max_train_steps"] = str(info.steps)
    if info.trigger:  # WebUI offers the most frequent tags as activation text
        meta["ss_tag_frequency"] = json.dumps({"fitad": {info.trigger: 1}})
    for key in ("dataset_hash", "prediction_type"):
        value = getattr(info, key)
        if value:
            meta[f"fitad_{key}"] = str(value)
    return meta


def save_safetensors_atomic(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str],
                            out: str | os.PathLike) -> Path:
    """Write a safetensors file via a temp file in the same directory and ``os.replace`` (never half-written)."""
    from safetensors.torch import save_file

    out = Path(out)
    with atomic_file(out) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))
    return out


def default_output_path(lora_dir: str | os.PathLike, fmt: str) -> Path:
    """Beside LORA_DIR (not inside: diffusers would then see two weight files there).

    Training writes ``RUN/lora/``; the file is then ``RUN/RUN.safetensors``, since WebUI lists LoRAs by file name.
    """
    lora_dir = Path(lora_dir).resolve()
    stem = lora_dir.parent.name if lora_dir.name == "lora" and lora_dir.parent.name else lora_dir.name
    suffix = "" if fmt == "kohya" else ".diffusers"
    return lora_dir.parent / f"{stem}{suffix}.safetensors"


# ---------------------------------------------------------------- entry points

def _infer_family(modules: Iterable[tuple[str, str]], source: Path) -> str:
    components = {component for component, _ in modules}
    if "unet" in components:
        return "sd15"
    if "transformer" in components:
        return "flux"
    raise ExportError(f"{source}: cannot tell the model family from components {sorted(components)} "
                      f"and {INFO_FILE} is missing")


@dataclasses.dataclass
class _Prepared:
    info: LoraInfo
    adapter_type: str
    tensors: dict[str, "torch.Tensor"]
    header: dict[str, str]       # header keys carried over from the source (diffusers format)
    converted: _Converted        # per-module ranks and alphas


def _prepare_lokr(config: ExportConfig, lora_dir: Path, info: LoraInfo | None) -> _Prepared:
    if info is None:
        raise ExportError(f"{lora_dir / INFO_FILE}: missing; needed to read a LoKr adapter")
    if config.format == "diffusers":
        raise ExportError(f"{lora_dir}: a LoKr adapter's diffusers-native form is the PEFT folder "
                          f"{lora_dir / PEFT_DIR} itself; use --format kohya for a single file")
    components = read_peft_dir(lora_dir, info.family)
    converted = convert_lokr(components, info.family, config.dtype, source=lora_dir / PEFT_DIR)
    return _Prepared(info, "lokr", converted.tensors, {}, converted)


def _prepare_lora(config: ExportConfig, lora_dir: Path, info: LoraInfo | None) -> _Prepared:
    weights = lora_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights}: missing (training writes the diffusers LoRA weights there)")
    state, file_meta = load_safetensors(weights)
    if not state:
        raise ExportError(f"{weights}: holds no tensors")
    modules = group_lora_modules(state, weights)
    if info is None:
        family = _infer_family(modules, weights)
        log.warning("%s missing: exporting as family %s with alpha from the weights header",
                    lora_dir / INFO_FILE, family)
        info = LoraInfo(family=family)
    allowed = {DENOISER[info.family], "text_encoder"}
    stray = sorted({c for c, _ in modules} - allowed)
    if stray:
        raise ExportError(f"{weights}: components {stray} do not belong to a {info.family} adapter "
                          f"(expected {sorted(allowed)}); is family in {INFO_FILE} right?")
    configs = adapter_configs(file_meta, weights)
    if not configs and info.alpha is None:
        log.warning("%s: no PEFT config header and no alpha in %s; assuming alpha = rank", weights, INFO_FILE)
    is_dora = any("lora_magnitude_vector" in p for p in modules.values())
    adapter_type = "dora" if is_dora else info.adapter_type
    if config.format == "kohya":
        converted = convert_lora_to_kohya(modules, info.family, configs, info.alpha, config.dtype, weights)
        return _Prepared(info, adapter_type, converted.tensors, {}, converted)
    ranks = [int(p["lora_A.weight"].shape[0]) for p in modules.values()]
    alphas = [kohya_alpha(m, r, configs.get(c), info.alpha) for (c, m), r in zip(modules, ranks)]
    tensors = {k: _cast(v, config.dtype) for k, v in fix_text_encoder_dora_keys(state).items()}
    header = {k: v for k, v in file_meta.items() if k == ADAPTER_METADATA_KEY}
    return _Prepared(info, adapter_type, tensors, header, _Converted({}, ranks, alphas))


def run(config: ExportConfig, lora_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> ExportResult:
    """Export ``lora_dir`` as configured; the one entry point behind ``fitad export``."""
    lora_dir = Path(lora_dir)
    if not lora_dir.is_dir():
        raise ExportError(f"{lora_dir}: LoRA directory does not exist")
    out_path = Path(out) if out is not None else default_output_path(lora_dir, config.format)
    if out_path.resolve().parent == lora_dir.resolve():
        raise ExportError(f"{out_path}: write the export outside {lora_dir} (it keeps only the native weights)")
    info = read_lora_info(lora_dir)
    prepare = _prepare_lokr if info is not None and info.adapter_type == "lokr" else _prepare_lora
    prepared = prepare(config, lora_dir, info)
    rank = most_common(prepared.converted.ranks)
    alpha = most_common(prepared.converted.alphas)
    metadata = {"format": "pt", **prepared.header,
                **export_metadata(prepared.info, prepared.adapter_type, rank, alpha,
                                  config.output_name or out_path.stem, config.format)}
    save_safetensors_atomic(prepared.tensors, metadata, out_path)
    return ExportResult(path=out_path, format=config.format, family=prepared.info.family,
                        adapter_type=prepared.adapter_type, key_count=len(prepared.tensors),
                        module_count=len(prepared.converted.ranks), rank=rank, alpha=alpha,
                        size_bytes=out_path.stat().st_size)


def export_kohya(lora_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                 dtype: str = "keep", output_name: str | None = None) -> Path:
    """Export ``lora_dir`` to one kohya/WebUI ``.safetensors`` file; returns its path."""
    return run(ExportConfig(format="kohya", dtype=dtype, output_name=output_name), lora_dir, out_file).path


def export_diffusers(lora_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                     dtype: str = "keep", output_name: str | None = None) -> Path:
    """Export ``lora_dir`` as one diffusers-native ``.safetensors`` file (PEFT config header kept)."""
    return run(ExportConfig(format="diffusers", dtype=dtype, output_name=output_name), lora_dir, out_file).path
