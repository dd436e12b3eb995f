"""Hyperparameters of the LoRA training stage: ``train`` (SD1.5 family) and ``train_flux`` (FLUX).

Both configs share the adapter, data, optimizer, checkpoint and validation settings of
:class:`LoraTrainConfig`; each family adds its own loss settings. The dataclasses validate
themselves, so a bad value fails with ``train.rank = 0 is out of range: must be >= 1`` before any
data or model is touched. Whether the machine can honour a setting (8-bit AdamW, NF4 base) is
checked later by :func:`fitad.train.runtime.check_backends`, still before any model is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from fitad.config import FALSE_WORDS, TRUE_WORDS, ConfigError, check_choice, check_range

SD_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# Joint (double-stream) blocks have image and text projections; single blocks only to_q/k/v.
FLUX_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj",
                       "to_add_out"]
TEXT_ENCODER_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"]

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


def _bool_or_auto(section: str, key: str, value: object) -> bool | str:
    """``true``/``false`` (bools or their usual spellings) or ``"auto"``; anything else names the key."""
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word == "auto":
        return "auto"
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ConfigError(f"{section}.{key} = {value!r} is not allowed: choose true, false or 'auto'")


@dataclasses.dataclass
class LoraTrainConfig:
    """Settings shared by every model family. Subclasses set ``SECTION`` and the family defaults."""

    SECTION: ClassVar[str] = "train"
    FAMILY: ClassVar[str] = ""
    RESOLUTION_MULTIPLE: ClassVar[int] = 8

    base_model: str = ""
    # adapter
    adapter_type: Literal["lora", "lokr"] = "lora"
    use_dora: bool = False
    rank: int = 32
    alpha: float | None = None  # None: equal to rank (scale 1.0)
    lora_dropout: float = 0.0
    target_modules: list[str] = dataclasses.field(default_factory=list)
    trigger: str | None = None  # None: taken from the dataset's report.json when it names one
    # data
    resolution: int = 512
    aspect_buckets: bool = False
    allow_upscale: bool = False
    random_flip: bool = False
    caption_dropout: float = 0.0
    # optimisation
    steps: int = 1000
    batch_size: int = 1
    gradient_accumulation: int = 1
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    seed: int = 42
    # speed and memory
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    # true | false | auto: on where one micro-batch's activations would not fit the device's memory
    # budget (CUDA, measured by a probe forward; see fitad.train.runtime.resolve_gradient_checkpointing),
    # off on CPU (RAM is plentiful there; checkpointing only costs time). The run records its choice.
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    cache_latents: bool = True
    cache_text_embeddings: bool = True
    # checkpoints and validation (0 disables the periodic ones; the final step always saves)
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    validation_every: int = 250
    validation_prompts: list[str] = dataclasses.field(default_factory=list)
    validation_seed: int = 0
    validation_inference_steps: int = 20
    validation_guidance: float = 7.0
    # Steps between loss syncs to the host (metrics line, NaN check, progress bar); auto: 10 on CUDA
    # (no per-step sync), 1 elsewhere. A non-finite loss is still caught before any checkpoint is written.
    log_every: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        s = self.SECTION
        if not self.base_model or not str(self.base_model).strip():
            raise ConfigError(f"{s}.base_model: a model ID, local diffusers directory or tiny model name is required")
        check_choice(s, "adapter_type", self.adapter_type, ("lora", "lokr"))
        if self.use_dora and self.adapter_type != "lora":
            raise ConfigError(f"{s}.use_dora = true needs adapter_type 'lora' (DoRA decomposes LoRA weights), "
                              f"got adapter_type {self.adapter_type!r}")
        check_range(s, "rank", self.rank, lo=1, hi=1024)
        if self.alpha is None:
            self.alpha = float(self.rank)
        check_range(s, "alpha", self.alpha, lo=0.0, lo_open=True)
        check_range(s, "lora_dropout", self.lora_dropout, lo=0.0, hi=1.0, hi_open=True)
        if not self.target_modules:
            raise ConfigError(f"{s}.target_modules: at least one module name is required")
        check_range(s, "resolution", self.resolution, lo=32, hi=4096)
        if self.resolution % self.RESOLUTION_MULTIPLE:
            raise ConfigError(f"{s}.resolution = {self.resolution} must be a multiple of "
                              f"{self.RESOLUTION_MULTIPLE} for the {self.FAMILY} latent grid")
        check_range(s, "caption_dropout", self.caption_dropout, lo=0.0, hi=1.0)
        check_range(s, "steps", self.steps, lo=1, hi=10_000_000)
        check_range(s, "batch_size", self.batch_size, lo=1, hi=4096)
        check_range(s, "gradient_accumulation", self.gradient_accumulation, lo=1, hi=4096)
        check_range(s, "learning_rate", self.learning_rate, lo=0.0, lo_open=True, hi=1.0)
        check_choice(s, "lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_range(s, "lr_warmup_steps", self.lr_warmup_steps, lo=0, hi=self.steps)
        check_choice(s, "optimizer", self.optimizer, ("adamw", "adamw8bit"))
        check_range(s, "adam_beta1", self.adam_beta1, lo=0.0, hi=1.0, hi_open=True)
        check_range(s, "adam_beta2", self.adam_beta2, lo=0.0, hi=1.0, hi_open=True)
        check_range(s, "adam_epsilon", self.adam_epsilon, lo=0.0, lo_open=True, hi=1.0)
        check_range(s, "weight_decay", self.weight_decay, lo=0.0, hi=1.0)
        check_range(s, "max_grad_norm", self.max_grad_norm, lo=0.0)  # 0 disables clipping
        check_range(s, "seed", self.seed, lo=0, hi=2**63 - 1)
        check_choice(s, "mixed_precision", self.mixed_precision, ("auto", "no", "fp16", "bf16"))
        check_range(s, "checkpoint_every", self.checkpoint_every, lo=0)
        check_range(s, "keep_checkpoints", self.keep_checkpoints, lo=1)
        check_range(s, "validation_every", self.validation_every, lo=0)
        check_range(s, "validation_inference_steps", self.validation_inference_steps, lo=1, hi=1000)
        check_range(s, "validation_guidance", self.validation_guidance, lo=0.0)
        self.gradient_checkpointing = _bool_or_auto(s, "gradient_checkpointing", self.gradient_checkpointing)
        if isinstance(self.log_every, str) and self.log_every.strip().lower() == "auto":
            self.log_every = "auto"
        elif isinstance(self.log_every, bool) or not isinstance(self.log_every, int):
            raise ConfigError(f"{s}.log_every = {self.log_every!r} is not allowed: a step count >= 1 or 'auto'")
        else:
            check_range(s, "log_every", self.log_every, lo=1)

    @property
    def adapter_kind(self) -> str:
        """What ``fitad_lora.json`` calls the adapter: ``lora``, ``dora`` or ``lokr``."""
        return "dora" if self.use_dora else self.adapter_type


@dataclasses.dataclass
class SDLoraConfig(LoraTrainConfig):
    """LoRA training of an SD1.x-architecture UNet (``fitad train --family sd15``)."""

    SECTION: ClassVar[str] = "train"
    FAMILY: ClassVar[str] = "sd15"
    RESOLUTION_MULTIPLE: ClassVar[int] = 8

    base_model: str = "stablediffusionapi/anything-v5"
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(SD_TARGET_MODULES))
    text_encoder_lora: bool = False
    # "auto" reads the scheduler config; an explicit value overrides it (e.g. a v-prediction finetune
    # whose scheduler config still says epsilon).
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = "auto"
    snr_gamma: float | None = 5.0  # Min-SNR weighting; null disables it
    noise_offset: float = 0.1
    # A1111 convention: 1 = last CLIP layer, 2 = penultimate (what anime SD1.5 models are tuned for).
    clip_skip: int = 2
    # Captions longer than CLIP's 77-token window: false cuts them (the run reports which, under
    # "captions" in train_summary.json); true encodes them A1111/kohya-style: the caption's tokens are
    # split into 75-token chunks, each encoded as its own BOS + chunk + EOS window of 77, and the chunk
    # embeddings are concatenated along the sequence axis (a batch is padded with empty chunks to its
    # longest caption). Validation renders use the same encoding; a renderer that cuts at 77 tokens
    # conditions the adapter differently from training.
    long_prompts: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.SECTION
        check_choice(s, "prediction_type", self.prediction_type, ("auto", "epsilon", "v_prediction"))
        check_range(s, "snr_gamma", self.snr_gamma, lo=0.0, lo_open=True, allow_none=True)
        check_range(s, "noise_offset", self.noise_offset, lo=0.0, hi=1.0)
        check_range(s, "clip_skip", self.clip_skip, lo=1, hi=12)


@dataclasses.dataclass
class FluxLoraConfig(LoraTrainConfig):
    """LoRA training of a FLUX transformer (``fitad train --family flux``)."""

    SECTION: ClassVar[str] = "train_flux"
    FAMILY: ClassVar[str] = "flux"
    # 8x VAE down-sampling, then 2x2 latent packing.
    RESOLUTION_MULTIPLE: ClassVar[int] = 16

    base_model: str = "black-forest-labs/FLUX.1-dev"
    target_modules: list[str] = dataclasses.field(default_factory=lambda: list(FLUX_TARGET_MODULES))
    learning_rate: float = 1e-4
    rank: int = 16
    timestep_sampling: Literal["logit_normal", "sigmoid", "uniform"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    sigmoid_scale: float = 1.0
    loss_weighting: Literal["none", "sigma_sqrt"] = "none"
    # auto: move the sampled sigmas by the base scheduler's shift (FLUX.1: resolution-dependent),
    # as sampling does; none: train on the raw timestep_sampling draws.
    timestep_shift: Literal["auto", "none"] = "auto"
    # Value fed to the guidance embedding of guidance-distilled bases (FLUX.1-dev) while training;
    # 1.0 is the common choice for LoRA training, ignored by bases without guidance embeddings.
    guidance_scale: float = 1.0
    max_sequence_length: int = 512
    quantize_base: Literal["none", "nf4", "int8"] = "none"
    offload_encoders: bool = True
    validation_guidance: float = 3.5

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.SECTION
        check_choice(s, "timestep_sampling", self.timestep_sampling, ("logit_normal", "sigmoid", "uniform"))
        check_range(s, "logit_std", self.logit_std, lo=0.0, lo_open=True)
        check_range(s, "sigmoid_scale", self.sigmoid_scale, lo=0.0, lo_open=True)
        check_choice(s, "loss_weighting", self.loss_weighting, ("none", "sigma_sqrt"))
        check_choice(s, "timestep_shift", self.timestep_shift, ("auto", "none"))
        check_range(s, "guidance_scale", self.guidance_scale, lo=0.0)
        check_range(s, "max_sequence_length", self.max_sequence_length, lo=1, hi=512)
        check_choice(s, "quantize_base", self.quantize_base, ("none", "nf4", "int8"))


CONFIG_BY_FAMILY: dict[str, type[LoraTrainConfig]] = {"sd15": SDLoraConfig, "flux": FluxLoraConfig}
