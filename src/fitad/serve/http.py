"""What an HTTP door sends back for a call into the ad service, without any web framework."""

from __future__ import annotations

import json
from typing import Any, Callable

from fitad.serve.errors import ApiError

META_HEADER = "X-Fitad-Meta"


def reply_parts(call: Callable[[], Any]) -> tuple[int, dict[str, str], bytes, str]:
    """Run ``call`` and give (status, headers, body, media type): an ad (``ServeResult``) as PNG with its metadata
    JSON in ``X-Fitad-Meta``, a dict as JSON, an :class:`ApiError` as its JSON body, status and headers."""
    try:
        out = call()
    except ApiError as exc:
        return exc.status, dict(exc.headers), exc.json_bytes(), "application/json"
    if isinstance(out, dict):
        return 200, {}, json.dumps(out, ensure_ascii=False, default=str).encode("utf-8"), "application/json"
    return 200, {META_HEADER: json.dumps(out.metadata, ensure_ascii=True, default=str)}, out.png, "image/png"


def respond(ctx: Any, call: Callable[[], Any]) -> Any:
    """:func:`reply_parts` as a Starlette ``Response`` for a framework handler; ``ctx.response.status_code`` is set
    too (BentoML overrides a returned Response's status with its context's)."""
    from starlette.responses import Response

    status, headers, body, media = reply_parts(call)
    ctx.response.status_code = status
    return Response(body, status_code=status, media_type=media, headers=headers)


def peer(request: Any) -> str:
    """The client address of a Starlette-style request (``request.client.host``), ``unknown`` without one."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"
