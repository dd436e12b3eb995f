"""The adapter formats Fit-AD reads and writes: file names, key names and alpha rules, in one place.

Training writes ``LORA_DIR`` (see :mod:`fitad.train.adapters`), :mod:`fitad.lora.export` turns it into one file,
and :mod:`fitad.lora.load` reads either back; all three take their names and scaling rules from here.

``LORA_DIR``::

    pytorch_lora_weights.safetensors   diffusers-native LoRA/DoRA (``<component>.<module>.lora_A.weight`` ...),
                                       the PEFT config per component in the ``lora_adapter_metadata`` header
    peft/[<component>/]                LoKr: PEFT ``adapter_config.json`` + ``adapter_model.safetensors``
    fitad_lora.json                    what training recorded (family, base model, rank, alpha, clip skip, ...)

Exported module names: SD1.5 -- kohya ``lora_unet_<path, '.' -> '_'>`` / ``lora_te_text_model_<...>``;
FLUX -- ``transformer.<path>`` / ``text_encoder.text_model.<path>``.

Alpha rules (what makes every reader apply PEFT's scale):

* LoRA: PEFT scales by ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), kohya readers by ``.alpha / rank``: the
  exported ``.alpha`` is PEFT's alpha (times ``sqrt(r)`` for rsLoRA).
* LoKr: PEFT scales ``kron(w1, w2)`` by ``alpha / r`` always; LyCORIS readers (ComfyUI, A1111, the ``lycoris``
  package) by ``.alpha / dim`` when a factor is rank-decomposed (``dim`` = its rank) and by 1 when both factors
  are full matrices. Decomposed: ``.alpha`` = PEFT's alpha. Full: ``alpha / r`` is multiplied into the left
  factor and ``.alpha`` = the rank, which those readers ignore (LyCORIS' own loader requires the key).
"""

from __future__ import annotations

import collections
import math
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
INFO_FILE = "fitad_lora.json"
PEFT_DIR = "peft"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
TRAIN_SUMMARY_FILE = "train_summary.json"  # beside LORA_DIR: RUN/lora + RUN/train_summary.json
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # where diffusers keeps the PEFT config in the file header

FAMILIES = ("sd15", "flux")
ADAPTER_TYPES = ("lora", "dora", "lokr")
BASE_MODEL_VERSION = {"sd15": "sd_v1", "flux": "flux1"}  # kohya's ss_base_model_version
DENOISER = {"sd15": "unet", "flux": "transformer"}
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
LOKR_PARAMS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")

LORA_PARAM_RE = re.compile(
    r"^(?P<module>.+)\.(?P<param>lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_magnitude_vector(?:\.weight)?)$")
LOKR_PARAM_RE = re.compile(r"^(?P<module>.+)\.(?P<param>lokr_(?:w1|w2)(?:_a|_b)?|lokr_t2)$")


class LoraFormatError(ValueError):
    """An adapter directory or file is not in a form Fit-AD can read or export; the message names it."""


# ---------------------------------------------------------------- key names

def split_component(key: str) -> tuple[str, str]:
    """``"unet.down_blocks.0…"`` -> ``("unet", "down_blocks.0…")``."""
    component, _, rest = key.partition(".")
    return component, rest


def kohya_module_name(component: str, module_path: str) -> str:
    """kohya/WebUI name of an SD1.5 module: ``lora_unet_`` / ``lora_te_text_model_`` + path with '.' -> '_'.

    transformers 5 flattened CLIPTextModel (no ``text_model.``); kohya names always carry it.
    """
    if component not in KOHYA_PREFIX:
        raise LoraFormatError(f"component {component!r} has no kohya name (SD1.5 has {sorted(KOHYA_PREFIX)})")
    if component == "text_encoder" and not module_path.startswith("text_model."):
        module_path = "text_model." + module_path
    return KOHYA_PREFIX[component] + module_path.replace(".", "_")


def flux_module_name(component: str, module_path: str) -> str:
    """Name of a FLUX module in the exported file: ``transformer.<path>`` / ``text_encoder.text_model.<path>``."""
    if component not in ("transformer", "text_encoder"):
        raise LoraFormatError(f"component {component!r} cannot be exported for FLUX "
                              "(transformer, text_encoder only)")
    if component == "text_encoder" and not module_path.startswith("text_model."):
        module_path = "text_model." + module_path
    return f"{component}.{module_path}"


def exported_module_name(family: str, component: str, module_path: str) -> str:
    """The module's name in an exported file of ``family`` (kohya for SD1.5, dotted for FLUX)."""
    return (kohya_module_name if family == "sd15" else flux_module_name)(component, module_path)


def fix_text_encoder_dora_keys(state: Mapping[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """Name text-encoder DoRA magnitudes ``….lora_magnitude_vector.weight`` (what transformers' loader expects)."""
    return {(f"{key}.weight" if key.startswith("text_encoder.") and key.endswith(".lora_magnitude_vector")
             else key): value for key, value in state.items()}


def has_text_encoder_dora(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("text_encoder.") and k.endswith(".lora_magnitude_vector") for k in state)


# ---------------------------------------------------------------- alpha rules

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


def lokr_rank_alpha(module_path: str, config: Mapping[str, Any]) -> tuple[int, float]:
    """PEFT LoKr ``r`` and ``alpha`` of one module (rank_pattern / alpha_pattern applied)."""
    rank = pattern_value(config.get("rank_pattern") or {}, module_path)
    alpha = pattern_value(config.get("alpha_pattern") or {}, module_path)
    rank = int(config.get("r", 8) if rank is None else rank)
    alpha = float(config.get("alpha", 8.0) if alpha is None else alpha)
    return rank, alpha


def lokr_decomposed_dim(params: Mapping[str, Any]) -> int | None:
    """The rank of a LoKr module's decomposed factor (``lokr_w2_b`` / ``lokr_w1_b`` rows); None if both are full."""
    source = params.get("lokr_w2_b", params.get("lokr_w1_b"))
    return None if source is None else int(source.shape[0])


def _left_factor(params: Mapping[str, Any]) -> str:
    return "lokr_w1" if "lokr_w1" in params else "lokr_w1_a"


def lokr_lycoris_tensors(params: Mapping[str, "torch.Tensor"], rank: int,
                         alpha: float) -> dict[str, "torch.Tensor"]:
    """One PEFT LoKr module (``delta = kron(w1, w2) * alpha / r``) -> LyCORIS tensors (suffix -> tensor).

    See the module docstring: ``.alpha`` is the real alpha where readers apply ``alpha / dim``; for two full
    factors ``alpha / r`` is multiplied into the left factor and ``.alpha`` = ``r`` (ignored by readers).
    """
    out = dict(params)
    dim = lokr_decomposed_dim(params)
    if dim is not None:
        if dim != rank:
            raise LoraFormatError(f"LoKr factor rank {dim} differs from the config rank {rank}")
        out["alpha"] = alpha_tensor(alpha)
    else:
        left = _left_factor(params)
        out[left] = params[left] * (alpha / rank)
        out["alpha"] = alpha_tensor(rank)
    return out


def bake_lokr_alpha(params: Mapping[str, Any]) -> dict[str, Any]:
    """LyCORIS tensors -> scale 1 (no ``alpha``): ``alpha / dim`` multiplied into the left factor where readers apply it."""
    params = dict(params)
    alpha = params.pop("alpha", None)
    dim = lokr_decomposed_dim(params)
    if alpha is not None and dim is not None:
        left = _left_factor(params)
        params[left] = params[left] * (float(alpha) / dim)
    return params


def alpha_tensor(alpha: float) -> "torch.Tensor":
    """A module's ``.alpha``: a 0-dim float32 tensor (kept float32 whatever the export dtype)."""
    import torch

    return torch.tensor(float(alpha), dtype=torch.float32)


def most_common(values: Iterable[Any]) -> Any:
    return collections.Counter(values).most_common(1)[0][0]
