"""Ad service settings (``serve:`` section of params.yaml): what is served, input limits, queue, auth, quotas."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import ClassVar

from fitad.config import ConfigError, check_range

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclasses.dataclass
class ServeConfig:
    """The ad service (``fitad serve``, ``serving/service.py``).

    What is served: the version of registered model ``model_name`` that carries ``alias`` (polled every
    ``poll_s`` seconds, swapped without a restart when the alias moves); with ``model_name: null`` there is
    no registry and ``lora`` (a path or URI, or nothing: the base model alone) is served.
    """

    SECTION: ClassVar[str] = "serve"
    model_name: str | None = "fitad-sks"     # registered model whose `alias` version is served; None: no registry
    lora: str | None = None                  # LoRA path/URI served when there is no registry
    alias: str = "approved"
    poll_s: float = 10.0                     # how often the alias is checked
    # input limits
    max_body_bytes: int = 20_000_000         # whole request body, enforced before it is read
    max_pixels: int = 40_000_000             # per uploaded image, checked on the header before decoding
    min_image_side: int = 64
    max_prompt_chars: int = 1000
    max_text_chars: int = 200                # headline, subcopy, shop name, offer
    max_steps: int = 50
    max_guidance: float = 20.0
    # concurrency: one generation at a time per worker
    max_queue: int = 4                       # requests waiting beyond the one running; then 429
    retry_after_s: int = 5                   # Retry-After of a 429 "busy"
    # auth and tiers
    api_keys_file: str | None = None         # YAML/JSON list of {name, sha256, tier}; None and no $FITAD_API_KEYS: off
    quota_db: str = ".fitad/serve/quota.sqlite3"
    free_daily_images: int = 3
    free_max_side: int = 720
    timezone_offset_hours: int = 9           # a quota "day" is the calendar day at this UTC offset (Korea: +9)

    def __post_init__(self) -> None:
        s = self.SECTION
        if self.model_name is not None and not _MODEL_NAME.match(str(self.model_name)):
            raise ConfigError(f"{s}.model_name = {self.model_name!r} is not a usable registered model name "
                              "(letters, digits, '.', '_', '-'; 1-200 characters, starting with a letter or digit)")
        if self.lora is not None and not str(self.lora).strip():
            raise ConfigError(f"{s}.lora: must be a LoRA path or URI, or null")
        if not _ALIAS.match(str(self.alias)):
            raise ConfigError(f"{s}.alias = {self.alias!r} is not a valid alias (letters, digits, '_', '-'; "
                              "1-64 characters)")
        check_range(s, "poll_s", self.poll_s, lo=0.1, hi=86_400)
        check_range(s, "max_body_bytes", self.max_body_bytes, lo=1024, hi=2**31)
        check_range(s, "max_pixels", self.max_pixels, lo=4096, hi=1_000_000_000)
        check_range(s, "min_image_side", self.min_image_side, lo=1, hi=4096)
        check_range(s, "max_prompt_chars", self.max_prompt_chars, lo=1, hi=100_000)
        check_range(s, "max_text_chars", self.max_text_chars, lo=1, hi=10_000)
        check_range(s, "max_steps", self.max_steps, lo=1, hi=200)
        check_range(s, "max_guidance", self.max_guidance, lo=0.0, hi=50.0)
        check_range(s, "max_queue", self.max_queue, lo=0, hi=10_000)
        check_range(s, "retry_after_s", self.retry_after_s, lo=1, hi=86_400)
        if self.api_keys_file is not None and not str(self.api_keys_file).strip():
            raise ConfigError(f"{s}.api_keys_file: must be a file path, or null (auth off unless $FITAD_API_KEYS)")
        if not str(self.quota_db).strip():
            raise ConfigError(f"{s}.quota_db: must be a file path")
        check_range(s, "free_daily_images", self.free_daily_images, lo=0, hi=1_000_000)
        check_range(s, "free_max_side", self.free_max_side, lo=64, hi=4096)
        check_range(s, "timezone_offset_hours", self.timezone_offset_hours, lo=-12, hi=14)

    def quota_path(self) -> Path:
        """Where the quota database lives: ``quota_db``, with a leading ``.fitad/`` meaning ``$FITAD_HOME``
        (the project's cache root, ``./.fitad`` by default) so tests and deployments can move it with the rest."""
        path = Path(self.quota_db)
        if not path.is_absolute() and path.parts and path.parts[0] == ".fitad":
            from fitad.zoo import fitad_home

            return fitad_home().joinpath(*path.parts[1:])
        return path


def load_serve_config(params_path: str | None = None, overrides: dict | None = None) -> ServeConfig:
    """``serve:`` of params.yaml (profile applied), then ``overrides`` (keyword values win)."""
    from fitad.config import load_section

    return load_section(ServeConfig, params_path, overrides)
