"""Typed stage configs loaded from sections of ``params.yaml`` and overridable from the command line.

Every stage's hyperparameters live in a dataclass that validates itself in ``__post_init__`` and
raises :class:`ConfigError` naming the key, the value and what is allowed. The same dataclass is
filled from ``params.yaml`` (the file DVC reads), from CLI ``--set key=value`` overrides, or from
Python keyword arguments, so the three doors to a stage cannot disagree.

Stage configs live next to their stage (``fitad.prep.config``, ``fitad.train.config``) so that
importing one does not import another stage's heavy dependencies; this module holds the shared
machinery and the configs of the foundation (zoo, synth).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or out of range. The message names the key."""


# ---------------------------------------------------------------- validation helpers

def check_range(section: str, key: str, value: float | int | None, *, lo: float | None = None,
                hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
                allow_none: bool = False) -> None:
    """Raise ConfigError unless ``lo <= value <= hi`` (bounds optional; ``*_open`` makes them strict)."""
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{section}.{key}: a value is required")
    lo_txt = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
    hi_txt = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
    allowed = " and ".join(t for t in (lo_txt, hi_txt) if t)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{section}.{key} = {value!r} is out of range: must be {allowed}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise ConfigError(f"{section}.{key} = {value!r} is out of range: must be {allowed}")


def check_choice(section: str, key: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{section}.{key} = {value!r} is not allowed: choose one of {choices}")


# ---------------------------------------------------------------- coercion

def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(section: str, key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError naming the key."""
    inner, optional = _strip_optional(tp)
    origin = typing.get_origin(inner)
    # "none"/"null" typed on a command line mean null, unless the field takes that very string
    # (a str field, or a Literal choice such as quantize_base: none).
    takes_string = inner is str or (origin is typing.Literal and value in typing.get_args(inner))
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")
                         and not takes_string):
        if optional:
            return None
        raise ConfigError(f"{section}.{key}: null is not allowed here (expected {_type_name(inner)})")
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if inner is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if inner is str:
            return str(value)
        if inner is Path:
            return Path(value)
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            (item_tp, *_rest) = typing.get_args(inner) or (Any,)
            items = [_coerce(section, key, v, item_tp) for v in value]
            return tuple(items) if origin is tuple else items
        if origin is typing.Literal:
            check_choice(section, key, value, typing.get_args(inner))
            return value
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(
            f"{section}.{key} = {value!r} is not a valid {_type_name(inner)}") from None
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


# ---------------------------------------------------------------- loading

def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn CLI ``key=value`` strings into a dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like key=value")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def from_mapping(cls: type[T], data: Mapping[str, Any], section: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad types raise ConfigError."""
    section = section or getattr(cls, "SECTION", cls.__name__)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(section, k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (or ``$FITAD_PARAMS``); a missing file yields an empty dict."""
    path = Path(path or os.environ.get("FITAD_PARAMS", DEFAULT_PARAMS))
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(cls: type[T], params_path: str | os.PathLike | None = None,
                 overrides: Mapping[str, Any] | None = None, section: str | None = None) -> T:
    """Load ``cls`` from its section of params.yaml, then apply ``overrides`` (CLI wins)."""
    section = section or getattr(cls, "SECTION")
    params = load_params(params_path)
    data = dict(params.get(section) or {})
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: section {section!r} must be a mapping")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(cls, data, section)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-friendly dict of a config (paths as strings), e.g. for MLflow params."""
    def conv(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


# ---------------------------------------------------------------- foundation configs

@dataclasses.dataclass
class SynthConfig:
    """Synthetic manga/webtoon panels with ground truth (``fitad data synth``)."""

    SECTION: typing.ClassVar[str] = "synth"
    n: int = 24
    seed: int = 0
    min_side: int = 512
    max_side: int = 1024
    max_characters: int = 2
    text_probability: float = 0.9

    def __post_init__(self) -> None:
        check_range(self.SECTION, "n", self.n, lo=1, hi=100_000)
        check_range(self.SECTION, "seed", self.seed, lo=0)   # numpy seeds are >= 0
        check_range(self.SECTION, "min_side", self.min_side, lo=64, hi=8192)
        check_range(self.SECTION, "max_side", self.max_side, lo=self.min_side, hi=8192)
        check_range(self.SECTION, "max_characters", self.max_characters, lo=1, hi=4)
        check_range(self.SECTION, "text_probability", self.text_probability, lo=0.0, hi=1.0)
