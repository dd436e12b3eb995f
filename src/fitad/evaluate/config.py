"""Settings of the LoRA evaluation stage (``evaluate:`` section of params.yaml)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fitad.config import ConfigError, check_choice, check_range

DEVICES = ("auto", "cpu", "cuda")
TRIGGER = "{trigger}"
DEFAULT_PROMPTS = ("{trigger}", "a photo of {trigger}", "{trigger} standing in a park", "{trigger} on an ad poster")


@dataclasses.dataclass
class EvalConfig:
    """A fixed prompt set rendered with fixed seeds, without and with the LoRA, scored with CLIP.

    ``base_model``/``trigger`` default to what the adapter records (``fitad_lora.json`` or the exported file's
    metadata). ``clip_model`` takes a zoo name (``tiny-clip``), a local directory or a hub ID
    (``openai/clip-vit-large-patch14``).
    """

    SECTION: ClassVar[str] = "evaluate"
    clip_model: str = "tiny-clip"
    base_model: str | None = None            # None: the adapter's base model
    trigger: str | None = None               # None: the adapter's trigger word
    prompts: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PROMPTS))
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    steps: int = 20
    guidance: float = 7.0
    resolution: int | None = None            # None: the base model's native square
    lora_scale: float = 1.0
    max_reference_images: int = 32           # training images CLIP-I compares with (sorted names, first N)
    device: str = "auto"                     # auto: cuda when available
    local_files_only: bool = True            # never download the CLIP or base model

    def __post_init__(self) -> None:
        s = self.SECTION
        if not self.clip_model or not str(self.clip_model).strip():
            raise ConfigError(f"{s}.clip_model: a model name, directory or hub ID is required")
        if self.trigger is not None and not self.trigger.strip():
            raise ConfigError(f"{s}.trigger: must not be empty (null: the adapter's trigger word)")
        if not self.prompts:
            raise ConfigError(f"{s}.prompts: at least one prompt template is required")
        for i, prompt in enumerate(self.prompts):
            if not isinstance(prompt, str) or TRIGGER not in prompt:
                raise ConfigError(f"{s}.prompts[{i}] = {prompt!r}: every template must contain {TRIGGER}")
        if not self.seeds:
            raise ConfigError(f"{s}.seeds: at least one seed is required")
        for i, seed in enumerate(self.seeds):
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ConfigError(f"{s}.seeds[{i}] = {seed!r} is not an integer")
            check_range(s, f"seeds[{i}]", seed, lo=0, hi=2**63 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{s}.seeds = {self.seeds!r}: seeds must be different")
        check_range(s, "steps", self.steps, lo=1, hi=200)
        check_range(s, "guidance", self.guidance, lo=0.0, hi=50.0)
        check_range(s, "resolution", self.resolution, lo=64, hi=4096, allow_none=True)
        if self.resolution is not None and self.resolution % 8:
            raise ConfigError(f"{s}.resolution = {self.resolution!r}: must be a multiple of 8")
        check_range(s, "lora_scale", self.lora_scale, lo=-4.0, hi=4.0)
        check_range(s, "max_reference_images", self.max_reference_images, lo=1, hi=10_000)
        check_choice(s, "device", self.device, DEVICES)

    def prompt_texts(self, trigger: str) -> list[str]:
        """The prompt templates with ``{trigger}`` replaced (other braces are left as written)."""
        return [template.replace(TRIGGER, trigger) for template in self.prompts]
