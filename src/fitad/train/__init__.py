"""LoRA training stage: ``train_sd_lora`` (SD1.5 family) and ``train_flux_lora`` (FLUX).

The entry functions are imported lazily so that ``import fitad.train`` (and the configs) does not
import torch or diffusers.
"""

from __future__ import annotations

from typing import Any

from fitad.train.config import CONFIG_BY_FAMILY, FluxLoraConfig, LoraTrainConfig, SDLoraConfig

__all__ = ["CONFIG_BY_FAMILY", "FluxLoraConfig", "LoraTrainConfig", "SDLoraConfig", "train_flux_lora",
           "train_sd_lora"]


def __getattr__(name: str) -> Any:
    if name == "train_sd_lora":
        from fitad.train.sd_lora import train_sd_lora

        return train_sd_lora
    if name == "train_flux_lora":
        from fitad.train.flux_lora import train_flux_lora

        return train_flux_lora
    raise AttributeError(f"module 'fitad.train' has no attribute {name!r}")
