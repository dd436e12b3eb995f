"""Typed, bounded request models of the ad service's JSON parts.

The bounds that a deployment sets (prompt length, steps, guidance, text lengths) come from
:class:`~fitad.serve.config.ServeConfig` at validation time, so one model serves every configuration::

    req = validate(Txt2ImgRequest, data, config)        # or parse_json(raw_body) first

Anything out of bounds, of the wrong type, missing or unknown raises :class:`~fitad.serve.errors.ApiError`
(422 ``invalid_field``) whose message names the field; a body that is not a UTF-8 JSON object is a 400.
Numbers must be finite (NaN and infinity are refused, and so is ``true`` where a number is expected); text
must be valid UTF-8 without NUL characters. ``format`` is one of the SNS formats or ``WIDTHxHEIGHT``;
``industry`` an industry id, Korean name or alias (normalised to the id); ``lora`` a registry reference
(``NAME``, ``NAME@alias``, ``NAME/version``), never a path or URI.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any, Iterable, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from fitad.serve.errors import ApiError, from_validation_error

__all__ = ["AdRequest", "CopyRequest", "JOB_HEADER", "LORA_REF", "MAX_SEED", "Txt2ImgRequest", "field_schemas",
           "job_id_header", "parse_json", "pick_seed", "request_fields", "route_fields", "validate"]

MAX_SEED = 2**32 - 1
# A registry reference: NAME, NAME@alias or NAME/version. No '/', '\\', ':' or '..' beyond that: never a path.
LORA_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}(@[A-Za-z0-9_-]{1,64}|/[0-9]{1,9})?$")
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
M = TypeVar("M", bound=BaseModel)


def _limits(info: ValidationInfo) -> Any:
    """The ServeConfig passed as validation context (defaults when a model is validated without one)."""
    config = (info.context or {}).get("config") if isinstance(info.context, dict) else None
    if config is None:
        from fitad.serve.config import ServeConfig

        config = ServeConfig()
    return config


def _check_text(value: str, limit: int) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (it contains an unpaired surrogate)") from None
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters long (got {len(value)})")
    return value


class _Strict(BaseModel):
    """Shared settings: unknown fields refused, NaN/inf refused, no silent str coercion of numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False,
                              frozen=True, validate_default=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON true/false is not a number (pydantic's lax mode would read it as 1/0)
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _numeric(field.annotation):
            raise ValueError("must be a number, not true/false")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number (not NaN or infinity)")
        return value


def _numeric(annotation: Any) -> bool:
    text = str(annotation)
    return any(word in text for word in ("int", "float"))


class _TextFields(_Strict):
    """Text drawn on the ad or written into the copy (each at most ``serve.max_text_chars``)."""

    industry: str = "cafe"
    lang: Literal["ko", "en"] = "ko"
    shop_name: str = ""
    headline: str = ""

    @field_validator("industry")
    @classmethod
    def _industry(cls, value: str) -> str:
        from fitad.generate.industries import INDUSTRIES, PromptError, resolve_industry

        try:
            return resolve_industry(value).id
        except PromptError:
            raise ValueError(f"must be one of {', '.join(INDUSTRIES)} (or a Korean name / alias such as "
                             "'카페' or '헤어샵')") from None

    @field_validator("shop_name", "headline", "subcopy", "offer", check_fields=False)
    @classmethod
    def _short_text(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, _limits(info).max_text_chars)


class _RenderFields(_TextFields):
    """What every rendering endpoint takes beside its images."""

    negative_prompt: str = ""
    format: str = "instagram_square"
    subcopy: str = ""
    offer: str = ""
    brand_colors: list[str] = Field(default_factory=list, max_length=8)
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    lora: str | None = None
    lora_scale: float = Field(default=1.0, ge=0.0, le=2.0)

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, _limits(info).max_prompt_chars)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        from fitad.ads.formats import MAX_SIDE, MIN_SIDE, FormatError, format_names, get_format

        _check_text(value, 64)
        try:
            get_format(value)
        except FormatError as exc:
            if "must be between" in str(exc):  # a custom size out of range
                raise ValueError(f"must be WIDTHxHEIGHT with each side between {MIN_SIDE} and {MAX_SIDE} px "
                                 f"(got {value!r})") from None
            raise ValueError(f"must be one of {', '.join(format_names())}") from None
        return value.strip()

    @field_validator("brand_colors")
    @classmethod
    def _colours(cls, value: list[str]) -> list[str]:
        for i, colour in enumerate(value):
            if not isinstance(colour, str) or not _HEX_COLOUR.match(colour):
                raise ValueError(f"item {i} must be a colour written as '#RRGGBB'")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: int | None, info: ValidationInfo) -> int | None:
        top = _limits(info).max_steps
        if value is not None and not 1 <= value <= top:
            raise ValueError(f"must be between 1 and {top} (got {value})")
        return value

    @field_validator("guidance")
    @classmethod
    def _guidance(cls, value: float | None, info: ValidationInfo) -> float | None:
        top = _limits(info).max_guidance
        if value is not None and not 0.0 <= value <= top:
            raise ValueError(f"must be between 0 and {top:g} (got {value:g})")
        return value

    @field_validator("lora")
    @classmethod
    def _lora(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not LORA_REF.match(value) or ".." in value:
            raise ValueError("must be a registered LoRA as NAME, NAME@alias or NAME/version (letters, digits, "
                             "'.', '_', '-'); paths and URIs are not accepted")
        return value


class Txt2ImgRequest(_RenderFields):
    """``POST /txt2img``: a prompt (required) rendered with the served LoRA, sized for ``format``."""

    prompt: str

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str, info: ValidationInfo) -> str:
        _check_text(value, _limits(info).max_prompt_chars)
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class AdRequest(_RenderFields):
    """``POST /ad/{product,person,advanced,compose}``: the JSON part beside the uploaded image(s).

    The mode comes from the route, not from the body; ``prompt`` is optional (the industry template fills in).
    """

    prompt: str = ""

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, _limits(info).max_prompt_chars)


class CopyRequest(_TextFields):
    """``POST /copy``: caption and hashtags for a shop."""

    offer: str = ""


def parse_json(raw: bytes | str | None) -> dict[str, Any]:
    """A request body as a JSON object: 400 ``invalid_request`` unless it is UTF-8 JSON with an object on top.

    NaN and Infinity (which Python's json module would accept) are refused; an empty body is ``{}``.
    """
    if raw is None or (isinstance(raw, (bytes, str)) and not raw.strip()):
        return {}
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, "invalid_request", f"the request body is not valid UTF-8 (byte {exc.start})") from None

    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_request",
                       f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                       ) from None
    except RecursionError:
        raise ApiError(400, "invalid_request", "the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request",
                       f"the request body must be a JSON object, not a JSON {type(data).__name__}")
    where = _non_finite(data)
    if where is not None:  # Python's json reads NaN / Infinity; JSON itself has no such numbers
        raise ApiError(422, "invalid_field", f"field '{where}' must be a finite number (not NaN or infinity)",
                       where)
    return data


def _non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN/infinite number in parsed JSON, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(body)"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_finite(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def validate(model_cls: type[M], data: Any, config: Any = None) -> M:
    """``model_cls`` from ``data`` with the bounds of ``config`` (a ServeConfig; defaults when None).

    Raises ApiError: 400 when ``data`` is not an object, 422 naming the first failing field otherwise.
    """
    if isinstance(data, (bytes, str)):
        data = parse_json(data)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request",
                       f"the request body must be a JSON object, not {type(data).__name__}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ApiError(422, "invalid_field", f"field names must be text (got {bad_keys[0]!r})")
    if config is None:
        from fitad.serve.config import ServeConfig

        config = ServeConfig()
    try:
        return model_cls.model_validate(data, context={"config": config})
    except ValidationError as exc:
        raise from_validation_error(exc, allowed_fields=model_cls.model_fields) from None


# One side of a custom WIDTHxHEIGHT format as a pattern: 64..4096 (fitad.ads.formats MIN_SIDE, MAX_SIDE).
_SIDE = "(6[4-9]|[7-9][0-9]|[1-9][0-9]{2}|[1-3][0-9]{3}|40[0-8][0-9]|409[0-6])"


def field_schemas(model_cls: type[BaseModel], config: Any = None) -> dict[str, dict[str, Any]]:
    """The JSON schema of each field of ``model_cls`` with the bounds ``config`` sets (steps, guidance, text
    lengths) and the accepted values (formats, industries, LoRA references) filled in.

    For the published OpenAPI document, so clients and fuzzers see the contract :func:`validate` enforces;
    :func:`validate` stays the one place that checks it.
    """
    from fitad.ads.formats import MAX_SIDE, MIN_SIDE, format_names
    from fitad.generate.industries import INDUSTRIES

    if config is None:
        from fitad.serve.config import ServeConfig

        config = ServeConfig()
    text = {"type": "string", "maxLength": config.max_text_chars}
    nullable = lambda schema: {"anyOf": [schema, {"type": "null"}], "default": None}  # noqa: E731
    bounds: dict[str, dict[str, Any]] = {
        "prompt": {"type": "string", "maxLength": config.max_prompt_chars},
        "negative_prompt": {"type": "string", "maxLength": config.max_prompt_chars, "default": ""},
        "shop_name": {**text, "default": ""}, "headline": {**text, "default": ""},
        "subcopy": {**text, "default": ""}, "offer": {**text, "default": ""},
        "industry": {"type": "string", "default": "cafe", "description": "an industry id, or its Korean name or alias",
                     "enum": list(dict.fromkeys(name for i in INDUSTRIES.values()
                                                for name in (i.id, i.name_ko, *i.aliases)))},
        "format": {"anyOf": [{"type": "string", "enum": [n for n in format_names() if n != "WIDTHxHEIGHT"]},
                             {"type": "string", "pattern": f"^{_SIDE}x{_SIDE}$"}],
                   "default": "instagram_square",
                   "description": f"an SNS format or WIDTHxHEIGHT with each side {MIN_SIDE}..{MAX_SIDE} px"},
        "steps": nullable({"type": "integer", "minimum": 1, "maximum": config.max_steps}),
        "guidance": nullable({"type": "number", "minimum": 0, "maximum": config.max_guidance}),
        "lora": nullable({"type": "string", "pattern": LORA_REF.pattern,
                          "description": "a registered LoRA: NAME, NAME@alias or NAME/version"}),
        "brand_colors": {"type": "array", "maxItems": 8, "items": {"type": "string", "pattern": _HEX_COLOUR.pattern}},
    }
    model_schema = model_cls.model_json_schema()
    out = {}
    for name, schema in model_schema["properties"].items():
        merged = {**schema, **bounds.get(name, {})}
        if "anyOf" in merged:  # the alternatives carry the types
            merged.pop("type", None)
        if name == "prompt" and name in model_schema.get("required", ()):
            merged.update(minLength=1, pattern=r"\S")  # not empty, not only spaces
        out[name] = merged
    return out


JOB_HEADER = "X-Fitad-Job"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # long enough not to be guessed


def job_id_header(value: str | None) -> str | None:
    """The job id a caller chose for a synchronous render (``X-Fitad-Job``), so it can poll ``/jobs/progress``
    while the request runs; None when absent. 422 unless 16..64 letters, digits, ``_`` or ``-``."""
    if value is None or not value.strip():
        return None
    if not _JOB_ID.match(value.strip()):
        raise ApiError(422, "invalid_field", f"header {JOB_HEADER} must be 16 to 64 letters, digits, '_' or '-'",
                       JOB_HEADER)
    return value.strip()


def pick_seed(seed: int | None) -> int:
    """``seed`` itself, or a random one in 0..2**32-1 when it is None (reported back to the caller)."""
    return int(seed) if seed is not None else secrets.randbelow(MAX_SEED + 1)


def request_fields(parsed_json: dict[str, Any] | None, form: Mapping[str, Any],
                   sent: Iterable[str] | None = None, allowed: Iterable[str] = ()) -> dict[str, Any]:
    """The request's fields: the JSON body as parsed by the route-shape middleware, else the multipart form
    fields (given one by one, or all in a ``request`` field holding a JSON object; single fields win).

    ``sent``: the names of the multipart parts as they arrived; one that is not in ``allowed`` (the route's fields
    and files) nor ``request`` is refused (422 naming it) rather than silently dropped.
    """
    if parsed_json is not None:
        return parsed_json
    known = {*allowed, "request"}
    unknown = sorted(set(sent or ()) - known) if allowed else []
    if unknown:
        raise ApiError(422, "invalid_field", f"unknown field '{unknown[0]}': this route takes "
                       f"{', '.join(sorted(known))}", unknown[0])
    single = {k: v for k, v in form.items() if v is not None and k != "request"}
    request = form.get("request")
    return {**(request if isinstance(request, dict) else parse_json(str(request or ""))), **single}


def route_fields(state: Any, declared: Mapping[str, Any], file_fields: Iterable[str]) -> dict[str, Any]:
    """:func:`request_fields` of one request as the route-shape middleware left it in ``state`` (``json``, or the
    multipart ``form_text`` and ``form_fields``); ``declared``: the route's own fields as the framework read them
    (used when the middleware left nothing, e.g. a stored task run later)."""
    files = set(file_fields)
    text = getattr(state, "form_text", None)
    form = {k: v for k, v in text.items() if k not in files} if text is not None else declared  # files: the route's
    return request_fields(getattr(state, "json", None), form, getattr(state, "form_fields", None),
                          {*declared, *files})
