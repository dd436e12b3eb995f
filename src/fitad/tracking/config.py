"""Settings of the register stage: which registered model a LoRA goes to, and the approval gate's thresholds."""

from __future__ import annotations

import dataclasses
import typing

from fitad.config import ConfigError, check_range

# The registry's two aliases: every new version is a candidate; the service deploys what is approved.
CANDIDATE = "candidate"
APPROVED = "approved"


@dataclasses.dataclass
class RegistryConfig:
    """Where a trained LoRA is registered (``fitad register``, ``fitad registry``)."""

    SECTION: typing.ClassVar[str] = "registry"
    model_name: str | None = None    # None: "fitad-<trigger word>", one registered model per character
    experiment: str = "fitad"        # MLflow experiment of the pipeline runs
    timeout_s: float = 10.0          # how long to wait for a tracking server before giving up

    def __post_init__(self) -> None:
        if self.model_name is not None and not _valid_name(self.model_name):
            raise ConfigError(f"registry.model_name: {self.model_name!r} is not a usable model name "
                              "(letters, digits, '-', '_', '.', 1-200 characters)")
        if not self.experiment.strip():
            raise ConfigError("registry.experiment: must not be empty")
        check_range(self.SECTION, "timeout_s", self.timeout_s, lo=0.5, hi=600)


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 200 and all(c.isalnum() or c in "-_." for c in name)


def default_model_name(trigger: str | None) -> str:
    """``fitad-<trigger>`` with anything but letters, digits, '-', '_' and '.' replaced by '-'."""
    word = "".join(c if (c.isalnum() or c in "-_.") else "-" for c in (trigger or "").strip()) or "lora"
    return f"fitad-{word}"[:200]


@dataclasses.dataclass
class GateConfig:
    """The evaluation gate: a version is approved automatically only when every check passes.

    Absolute floors on the evaluation metrics, a band for the LoRA's effect size (too small: the LoRA
    does nothing; too large: it destroys the base model's images), and no metric more than
    ``max_drop_vs_approved`` below the version that is approved now.
    """

    SECTION: typing.ClassVar[str] = "gate"
    # Defaults are the embedded setup's floors (tiny random CLIP: every score squeezed together); params.yaml's
    # production profile sets the real ones (0.20, 0.60, 0.01), like every other embedded default here.
    enabled: bool = True             # false: versions stay candidates until a reviewer approves one
    min_clip_t: float = 0.0          # prompt alignment (cosine, CLIP)
    min_clip_i: float = 0.5          # likeness to the training images (cosine, CLIP)
    min_effect_size: float = 1e-5    # 1 - cos(LoRA render, base render), CLIP space
    max_effect_size: float = 0.60
    max_drop_vs_approved: float = 0.02   # clip_t / clip_i may fall at most this much below the approved version
    compare_metrics: list[str] = dataclasses.field(default_factory=lambda: ["clip_t", "clip_i"])

    def __post_init__(self) -> None:
        for key in ("min_clip_t", "min_clip_i"):
            check_range(self.SECTION, key, getattr(self, key), lo=-1.0, hi=1.0)
        check_range(self.SECTION, "min_effect_size", self.min_effect_size, lo=0.0, hi=2.0)
        check_range(self.SECTION, "max_effect_size", self.max_effect_size, lo=self.min_effect_size, hi=2.0)
        check_range(self.SECTION, "max_drop_vs_approved", self.max_drop_vs_approved, lo=0.0, hi=2.0)
        if not all(isinstance(m, str) and m for m in self.compare_metrics):
            raise ConfigError("gate.compare_metrics: must be a list of metric names")
