"""API errors: one exception type with an HTTP status, a machine-readable code and a sentence for people.

Every refusal of the ad service is an :class:`ApiError`; the service (or :mod:`fitad.serve.middleware`)
turns it into ``{"error": {"code", "message", "field", "request_id"}}`` with its status and headers
(``Retry-After`` for 429/503, ``WWW-Authenticate`` for 401). The message is a plain sentence that names
the field and what is wrong with it; it never carries a traceback.

The request id of the request being served lives in :data:`request_id_var` (set by the middleware), so
an error body built anywhere during the request carries it.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any, Iterable, Mapping

__all__ = ["ApiError", "STATUS_OF", "from_validation_error", "request_id_var", "current_request_id"]

# The request id of the request being served ("" outside a request); set by fitad.serve.middleware.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("fitad_request_id", default="")

# The usual status of each code (a code may be raised with another status where it fits better).
STATUS_OF: dict[str, int] = {
    "invalid_request": 400,      # the body is not JSON / not an object / not UTF-8; a bad header
    "invalid_image": 400,        # an upload that is truncated, corrupt or too small
    "empty_upload": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_field": 422,        # a field out of bounds, of the wrong type, missing or unknown
    "wrong_family": 422,         # a LoRA trained for another base model family
    "quota_exceeded": 429,
    "busy": 429,                 # the queue is full
    "internal": 500,
    "not_ready": 503,
}


def current_request_id() -> str:
    """The id of the request being served, or "" outside one."""
    return request_id_var.get()


class ApiError(Exception):
    """A refusal with an HTTP status, a code (``invalid_field``, ``quota_exceeded`` ...), a sentence and the field.

    ``headers`` go on the response as they are (e.g. ``{"Retry-After": "5"}``).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if not 400 <= int(status) <= 599:
            raise ValueError(f"ApiError status must be 4xx or 5xx, got {status}")
        self.status = int(status)
        self.code = code
        self.message = message
        self.field = field
        self.headers: dict[str, str] = {str(k): str(v) for k, v in (headers or {}).items()}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """``{"error": {"code", "message", "field", "request_id"}}``; the request id defaults to the current one."""
        rid = request_id if request_id is not None else current_request_id()
        error: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if rid:
            error["request_id"] = rid
        return {"error": error}

    def json_bytes(self, request_id: str | None = None) -> bytes:
        return json.dumps(self.body(request_id), ensure_ascii=False).encode("utf-8")

    def __reduce__(self) -> tuple:  # picklable (tasks, worker processes) with every attribute
        return (type(self), (self.status, self.code, self.message, self.field, self.headers))

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r}, field={self.field!r})"


# ---------------------------------------------------------------- pydantic errors in words

def _dotted(loc: Iterable[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _shown(value: Any) -> str | None:
    """A short, safe rendering of a refused input value (None when it is too long or not a scalar)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return None


_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number (not NaN or infinity)",
    "string_type": "must be text",
    "string_unicode": "must be valid UTF-8 text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "literal_error": None,       # pydantic's own words list the choices
}


def from_validation_error(exc: Any, allowed_fields: Iterable[str] | None = None) -> ApiError:
    """An :class:`ApiError` for the first failing field of a pydantic ``ValidationError``.

    422 ``invalid_field`` naming the field (dotted path) and the constraint in words; 400
    ``invalid_request`` when the body as a whole is unusable (not JSON, not an object).
    ``allowed_fields`` (a model's field names) is listed when an unknown field is refused.
    """
    errors = exc.errors(include_url=False)
    if not errors:
        return ApiError(422, "invalid_field", "the request is not valid")
    err = errors[0]
    kind = err.get("type", "")
    loc = tuple(err.get("loc") or ())
    field = _dotted(loc) or None
    more = len(errors) - 1
    tail = f" ({more} more problem{'s' if more > 1 else ''} in this request)" if more else ""
    if kind == "json_invalid" or (not loc and kind in ("model_type", "dict_type", "model_attributes_type")):
        return ApiError(400, "invalid_request", "the request body must be a JSON object" + tail)
    if kind == "missing":
        return ApiError(422, "invalid_field", f"field '{field}' is required but missing{tail}", field)
    if kind == "extra_forbidden":
        known = sorted(allowed_fields) if allowed_fields is not None else None
        listed = f"; accepted fields are {', '.join(known)}" if known else ""
        return ApiError(422, "invalid_field", f"field '{field}' is not accepted by this endpoint{listed}{tail}",
                        field)
    words = _TYPE_WORDS.get(kind)
    if words is None:
        msg = str(err.get("msg") or "is not valid")
        # pydantic words: "Input should be ...", "Value error, ..." (from our validators)
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
        if msg.startswith("Input should"):
            msg = "must" + msg[len("Input should"):]
        words = msg
    shown = _shown(err.get("input"))
    # our own validators' messages say what they got where it helps; pydantic's do not
    got = f" (got {shown})" if shown is not None and kind not in ("string_unicode", "value_error") else ""
    return ApiError(422, "invalid_field", f"field '{field}' {words}{got}{tail}", field)
