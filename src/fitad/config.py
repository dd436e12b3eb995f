"""Typed stage configs loaded from sections of ``params.yaml`` and overridable from the command line.

Every stage's hyperparameters live in a dataclass that validates itself in ``__post_init__`` and
raises :class:`ConfigError` naming the key, the value and what is allowed. The same dataclass is
filled from ``params.yaml`` (the file DVC reads), from CLI ``--set key=value`` overrides, or from
Python keyword arguments, so the three doors to a stage cannot disagree.

``--set`` takes ``key=value`` or ``section.key=value`` (the form ``dvc exp run -S`` uses); a section
that is not the command's is an error naming both. A value typed on the command line is read by the
field's type: a word a ``str`` or ``Literal`` field takes stays that word (``mixed_precision=no``,
``quantize_base=none``, ``class_word=on``) instead of becoming YAML's boolean or null; ``null``
and ``~`` clear an optional field; other values are parsed as YAML scalars or lists. In
``params.yaml`` too, a YAML 1.1 boolean (``no``, ``off``) given to a ``Literal`` field is read as
the matching word.

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


class CliValue(str):
    """The raw text of a ``--set key=value`` value: parsed by the field's type (see :func:`_from_cli`)."""


TRUE_WORDS = ("true", "yes", "on", "1")     # how a boolean setting may be spelled (any case)
FALSE_WORDS = ("false", "no", "off", "0")
_YAML_TRUE = ("y", "yes", "true", "on")     # what YAML 1.1 reads as a boolean (params.yaml)
_YAML_FALSE = ("n", "no", "false", "off")
_YAML_NULL = ("null", "~")


def _from_cli(raw: str, tp: Any) -> Any:
    """A command-line value for a field of type ``tp``.

    Optional fields: ``null``/``~`` is None. A word a Literal field lists, or any text for a ``str``/Path
    field, is kept as typed (YAML would turn ``no``/``on`` into booleans and ``0.10`` into 0.1); quotes
    around it are removed. Lists (``[a, b]`` or ``a,b``) are split and each item read by the item type.
    Anything else is parsed as YAML (numbers, booleans), and text that is not valid YAML is kept for the
    type check to report.
    """
    inner, optional = _strip_optional(tp)
    text = raw.strip()
    if optional and text.lower() in _YAML_NULL:
        return None
    origin = typing.get_origin(inner)
    if origin is typing.Literal and text in typing.get_args(inner):
        return text
    if origin in (typing.Union, types.UnionType):  # e.g. bool | Literal["auto"]: a listed word stays a word
        words = [w for m in typing.get_args(inner) if typing.get_origin(m) is typing.Literal
                 for w in typing.get_args(m)]
        if text in words:
            return text
    if inner is bool:
        return text  # the bool check below reads true/yes/on/1 and false/no/off/0
    if origin in (list, tuple):  # "[a, b]" or "a,b"; each item is read by the item type
        if text.startswith("["):
            try:
                items = yaml.load(text, Loader=yaml.BaseLoader)  # every scalar stays text
            except yaml.YAMLError:
                raise ValueError(text) from None
            if not isinstance(items, list):
                raise ValueError(text)
            return [CliValue(i) if isinstance(i, str) else i for i in items]
        return [CliValue(v.strip()) for v in text.split(",") if v.strip()]
    if inner is str or inner is Path:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            try:
                return str(yaml.safe_load(text))
            except yaml.YAMLError:
                pass
        return text
    if not text:
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _literal_word(value: bool, choices: tuple[Any, ...]) -> Any:
    """The one choice YAML 1.1 would have read as ``value`` (``no`` -> False), else ``value`` unchanged."""
    words = _YAML_TRUE if value else _YAML_FALSE
    matches = [c for c in choices if isinstance(c, str) and c.lower() in words]
    return matches[0] if len(matches) == 1 else value


def _coerce(section: str, key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError naming the key."""
    inner, optional = _strip_optional(tp)
    origin = typing.get_origin(inner)
    if isinstance(value, CliValue):
        try:
            value = _from_cli(value, tp)
        except ValueError:
            raise ConfigError(f"{section}.{key} = {str(value)!r} is not a valid {_type_name(inner)}") from None
    # "none"/"null" typed on a command line mean null, unless the field takes that very string
    # (a str field, or a Literal choice such as quantize_base: none).
    takes_string = inner is str or (origin is typing.Literal and value in typing.get_args(inner))
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")
                         and not takes_string):
        if optional:
            return None
        raise ConfigError(f"{section}.{key}: null is not allowed here (expected {_type_name(inner)})")
    if origin in (typing.Union, types.UnionType):  # bool | Literal["auto"], int | Literal["auto"]
        members = typing.get_args(inner)
        words = [w for m in members if typing.get_origin(m) is typing.Literal for w in typing.get_args(m)]
        if value in words:
            return value
        spelled = {str(w).lower(): w for w in words}
        if isinstance(value, str) and value.strip().lower() in spelled:
            return spelled[value.strip().lower()]
        for member in members:
            if typing.get_origin(member) is not typing.Literal:
                try:
                    return _coerce(section, key, value, member)
                except ConfigError:
                    pass
        kinds = [_type_name(m) for m in members if typing.get_origin(m) is not typing.Literal]
        raise ConfigError(f"{section}.{key} = {value!r} is not allowed: expected {' or '.join(kinds)} or one of "
                          f"{words}")
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):  # YAML reads a bare 1 / 0 as an int
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in TRUE_WORDS:
                return True
            if isinstance(value, str) and value.strip().lower() in FALSE_WORDS:
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
            if isinstance(value, bool):  # params.yaml `mixed_precision: no` reads as False in YAML 1.1
                value = _literal_word(value, typing.get_args(inner))
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

def parse_overrides(pairs: Iterable[str], section: str | None = None) -> dict[str, Any]:
    """Turn CLI ``key=value`` / ``section.key=value`` strings into a dict of :class:`CliValue` texts.

    The values are parsed later, by the type of the field they set. With ``section`` given, a
    ``section.`` prefix is removed here (and a different one is refused); otherwise prefixed keys are
    kept and :func:`from_mapping` checks them.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like key=value or section.key=value")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise ConfigError(f"override {pair!r} has no key: it must look like key=value")
        out[key] = CliValue(raw)
    return unprefixed(out, section) if section else out


def unprefixed(data: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``{"train.rank": 8}`` -> ``{"rank": 8}`` for section ``train``; another section's key is refused.

    Keys are taken in order, so a later key wins over an earlier one that names the same field.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if "." in key:
            prefix, rest = key.split(".", 1)
            if prefix != section:
                raise ConfigError(f"override {key!r} names section {prefix!r}, but this command reads "
                                  f"section {section!r}: write {section}.{rest}=... or {rest}=...")
            key = rest
        out.pop(key, None)
        out[key] = value
    return out


def from_mapping(cls: type[T], data: Mapping[str, Any], section: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad types raise ConfigError.

    Keys may carry the section prefix (``train.rank``); another section's prefix is refused.
    """
    section = section or getattr(cls, "SECTION", cls.__name__)
    data = unprefixed(data, section)
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


def active_profile(params: Mapping[str, Any]) -> str | None:
    """The profile in force: ``$FITAD_PROFILE``, else params.yaml's ``profile`` key (None: no profile)."""
    name = os.environ.get("FITAD_PROFILE") or params.get("profile")
    if name in (None, ""):
        return None
    profiles = params.get("profiles") or {}
    if not isinstance(profiles, Mapping) or name not in profiles:
        known = sorted(profiles) if isinstance(profiles, Mapping) else []
        raise ConfigError(f"params.yaml: profile {name!r} is not defined under 'profiles:' (defined: {known})")
    return str(name)


def section_data(params: Mapping[str, Any], section: str) -> dict[str, Any]:
    """A section of params.yaml with the active profile's entries for it laid over it.

    A profile (``profiles.<name>.<section>``) changes only the keys it names, so switching between the
    embedded tiny models and production models is one change (``profile: production``, or
    ``dvc exp run -S profile=production``, or ``FITAD_PROFILE=production``), not an edit of every section.
    """
    data = params.get(section) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"params.yaml: section {section!r} must be a mapping")
    data = dict(data)
    profile = active_profile(params)
    if profile is not None:
        chosen = params["profiles"][profile] or {}
        if not isinstance(chosen, Mapping):
            raise ConfigError(f"params.yaml: profiles.{profile} must be a mapping of sections")
        layer = chosen.get(section) or {}
        if not isinstance(layer, Mapping):
            raise ConfigError(f"params.yaml: profiles.{profile}.{section} must be a mapping")
        data.update(layer)
    return data


def load_section(cls: type[T], params_path: str | os.PathLike | None = None,
                 overrides: Mapping[str, Any] | None = None, section: str | None = None) -> T:
    """Load ``cls`` from its section of params.yaml (with the active profile's changes), then apply
    ``overrides`` (CLI wins)."""
    section = section or getattr(cls, "SECTION")
    data = section_data(load_params(params_path), section)
    overrides = unprefixed(overrides or {}, section)
    data.update({k: v for k, v in overrides.items() if v is not None})
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
