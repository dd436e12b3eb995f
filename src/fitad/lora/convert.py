"""State-dict converters behind ``fitad export``: diffusers-native LoRA -> kohya/FLUX names, PEFT LoKr -> LyCORIS.

Names and alpha rules come from :mod:`fitad.lora.format`; these functions only walk the modules and check them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from fitad.lora.format import (LOKR_PARAM_RE, LoraFormatError, alpha_tensor, exported_module_name, kohya_alpha,
                               lokr_lycoris_tensors, lokr_rank_alpha)

if TYPE_CHECKING:
    import torch

log = logging.getLogger("fitad.lora.export")  # users configure logging for the export they run


@dataclasses.dataclass
class Converted:
    """Exported tensors plus each module's rank and alpha (in module order)."""

    tensors: dict[str, "torch.Tensor"]
    ranks: list[int]
    alphas: list[float]


def cast(tensor: "torch.Tensor", dtype: str) -> "torch.Tensor":
    """``tensor`` in ``dtype`` ("keep" or a torch dtype name; integer tensors are never cast), contiguous."""
    import torch

    if dtype != "keep" and tensor.is_floating_point():
        tensor = tensor.to(getattr(torch, dtype))
    return tensor.detach().contiguous()


def convert_lora_to_kohya(modules: Mapping[tuple[str, str], dict], family: str,
                          configs: Mapping[str, Mapping[str, Any]], default_alpha: float | None,
                          dtype: str = "keep", source: Path | None = None) -> Converted:
    """diffusers-native LoRA modules -> kohya (SD1.5) or ``transformer.`` + ``.alpha`` (FLUX) tensors."""
    tensors: dict[str, "torch.Tensor"] = {}
    ranks: list[int] = []
    alphas: list[float] = []
    owner: dict[str, str] = {}
    for (component, module_path), params in sorted(modules.items()):
        where = f"{source}: module {component}.{module_path}" if source else f"module {component}.{module_path}"
        if "lora_magnitude_vector" in params:
            raise LoraFormatError(
                f"{where} is a DoRA module: kohya/LyCORIS files carry DoRA as '.dora_scale', which diffusers "
                "drops when loading, so the export would not reproduce the adapter. Use --format diffusers "
                "(keeps lora_magnitude_vector, which diffusers loads).")
        if "lora_B.bias" in params:
            raise LoraFormatError(f"{where} has a LoRA bias (lora_bias=True), which the kohya format cannot carry")
        down, up = params["lora_A.weight"], params["lora_B.weight"]
        rank = int(down.shape[0])
        if up.shape[1] != rank:
            raise LoraFormatError(f"{where}: lora_A has rank {rank} but lora_B has {up.shape[1]} columns")
        alpha = kohya_alpha(module_path, rank, configs.get(component), default_alpha)
        name = exported_module_name(family, component, module_path)
        pair = ("lora_down.weight", "lora_up.weight") if family == "sd15" else ("lora_A.weight", "lora_B.weight")
        if name in owner:  # kohya's '.' -> '_' is lossy; two paths must never share a name
            raise LoraFormatError(f"{where} and {owner[name]} map to the same name {name!r}")
        owner[name] = f"{component}.{module_path}"
        tensors[f"{name}.{pair[0]}"] = cast(down, dtype)
        tensors[f"{name}.{pair[1]}"] = cast(up, dtype)
        tensors[f"{name}.alpha"] = alpha_tensor(alpha)
        ranks.append(rank)
        alphas.append(alpha)
    if family == "sd15" and len(set(alphas)) > 1:
        log.warning("%s: modules have different alphas %s; A1111 and ComfyUI apply each module's .alpha, but "
                    "diffusers' kohya loader applies one alpha to all (fitad.lora.load handles this)",
                    source, sorted(set(alphas)))
    return Converted(tensors, ranks, alphas)


def convert_lokr(components: Mapping[str, tuple[dict[str, Any], dict[str, "torch.Tensor"]]], family: str,
                 dtype: str = "keep", source: Path | None = None) -> Converted:
    """PEFT LoKr state dicts (per component) -> LyCORIS-named tensors (alpha rule: :mod:`fitad.lora.format`)."""
    tensors: dict[str, "torch.Tensor"] = {}
    ranks: list[int] = []
    alphas: list[float] = []
    for component, (config, state) in sorted(components.items()):
        modules: dict[str, dict] = collections.defaultdict(dict)
        for key, tensor in state.items():
            match = LOKR_PARAM_RE.match(key)
            if match is None:
                raise LoraFormatError(f"{source}: key {key!r} of {component} is not a LoKr weight")
            modules[match["module"]][match["param"]] = tensor
        for module_path, params in sorted(modules.items()):
            rank, alpha = lokr_rank_alpha(module_path, config)
            name = exported_module_name(family, component, module_path)
            for suffix, tensor in lokr_lycoris_tensors(params, rank, alpha).items():
                tensors[f"{name}.{suffix}"] = tensor if suffix == "alpha" else cast(tensor, dtype)
            ranks.append(rank)
            alphas.append(alpha)
    return Converted(tensors, ranks, alphas)
