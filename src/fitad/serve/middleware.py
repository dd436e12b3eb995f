"""Plain ASGI middleware for the ad service (works in front of BentoML, Starlette or any ASGI app; only the
multipart check borrows Starlette's parser, imported when first used).

* :class:`BodyLimitMiddleware` -- refuses a request body above ``max_body_bytes`` with 413 JSON: from
  ``Content-Length`` before a byte of the body is read, and by counting the chunks of a streamed
  (chunked) body, aborting as soon as the count passes the limit. It also gives every request an id
  (the incoming ``X-Request-ID`` when it is a safe token of at most 64 characters, else a new uuid4 hex),
  puts it in ``scope["state"]["request_id"]`` and :data:`fitad.serve.errors.request_id_var`, and adds
  ``X-Request-ID`` to the response.
* :class:`ErrorJSONMiddleware` -- an :class:`~fitad.serve.errors.ApiError` escaping the app becomes its JSON
  response; any other exception a 500 ``{"error": {"code": "internal", ...}}`` without a traceback, the
  traceback going to the log with the request id.

:func:`wrap` stacks both in the right order (the body limit outside, so the error handler sees the id).
Add :class:`RequestIdFilter` to a log handler to print ``%(request_id)s`` in every record.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Iterable

from fitad.serve.errors import ApiError, request_id_var

__all__ = ["BodyLimitMiddleware", "BodyTooLarge", "ErrorJSONMiddleware", "RequestIdFilter", "REQUEST_ID_HEADER",
           "safe_request_id", "send_json", "wrap"]

log = logging.getLogger("fitad.serve")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def safe_request_id(incoming: str | bytes | None) -> str:
    """``incoming`` when it is a safe token (letters, digits, ``._:-``, at most 64), else a new uuid4 hex."""
    if isinstance(incoming, bytes):
        try:
            incoming = incoming.decode("ascii")
        except UnicodeDecodeError:
            incoming = None
    if incoming and _SAFE_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers") or () if k.lower() == name]


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None,
                    request_id: str | None = None) -> None:
    """Send a whole JSON response (``Content-Type: application/json``, the request id header when given)."""
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if request_id:
        raw.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def send_error(send: Send, error: ApiError, request_id: str | None = None) -> None:
    rid = request_id if request_id is not None else request_id_var.get()
    await send_json(send, error.status, error.body(rid), error.headers, rid or None)


class BodyTooLarge(ApiError):
    """Raised from ``receive`` when a streamed body passes the limit (the app should let it propagate)."""

    def __init__(self, limit: int, received: int | None = None) -> None:
        size = f" ({received:,} bytes)" if received is not None else ""
        super().__init__(413, "payload_too_large",
                         f"the request body{size} is above the limit of {limit:,} bytes (serve.max_body_bytes)")
        self.limit = limit

    def __reduce__(self) -> tuple:
        return (ApiError, (self.status, self.code, self.message, self.field, self.headers))


class BodyLimitMiddleware:
    """413 for bodies above ``max_body_bytes`` before they are read; request ids on every HTTP request.

    ``paths_exempt``: paths (exact, or a prefix when they end with ``/``) whose body is not limited
    (they still get request ids).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, paths_exempt: Iterable[str] = ()) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.paths_exempt = tuple(paths_exempt)

    def _exempt(self, path: str) -> bool:
        return any(path == p or (p.endswith("/") and path.startswith(p)) for p in self.paths_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        rid = safe_request_id(incoming[0] if incoming else None)
        state = scope.get("state")
        if not isinstance(state, dict):
            state = {}
            scope["state"] = state
        state["request_id"] = rid
        token = request_id_var.set(rid)
        try:
            await self._handle(scope, receive, send, rid)
        finally:
            request_id_var.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        limit = self.max_body_bytes
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        if self._exempt(scope.get("path", "")):
            await self.app(scope, receive, send_with_id)
            return

        lengths = {v.strip() for v in _header(scope, b"content-length")}
        if lengths:
            if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
                await send_error(send_with_id, ApiError(400, "invalid_request", "the Content-Length header is "
                                                        "not a single whole number"), rid)
                return
            declared = int(next(iter(lengths)))
            if declared > limit:
                await send_error(send_with_id, BodyTooLarge(limit, declared), rid)
                return

        received = 0
        tripped = False

        async def limited_receive() -> Message:
            nonlocal received, tripped
            if tripped:  # the app asks again after the limit: the body is over for it
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body") or b"")
                if received > limit:
                    tripped = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            if tripped:  # the app's own answer to a body cut short is replaced by the 413
                return
            await send_with_id(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped:
            if started:
                log.warning("request %s: body passed %d bytes after the response had started", rid, limit)
                return
            log.info("request %s: body above %d bytes refused (413)", rid, limit)
            await send_error(send_with_id, BodyTooLarge(limit), rid)


class ErrorJSONMiddleware:
    """ApiError -> its JSON response; any other exception -> 500 JSON ``internal`` with the request id, the
    traceback logged (never sent). After the response has started nothing can be sent: the error is
    logged and re-raised so the server closes the connection."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            state = scope.get("state") if isinstance(scope.get("state"), dict) else {}
            rid = request_id_var.get() or state.get("request_id") or safe_request_id(
                (_header(scope, REQUEST_ID_HEADER) or [None])[0])
            if started:
                self.log.error("request %s: %s after the response started", rid, type(exc).__name__,
                               exc_info=exc)
                raise
            if isinstance(exc, ApiError):
                if exc.status >= 500:
                    self.log.error("request %s: %s", rid, exc.message, exc_info=exc)
                await send_error(tracking_send, exc, rid)
                return
            self.log.error("request %s %s %s failed: %s", rid, scope.get("method", ""), scope.get("path", ""),
                           type(exc).__name__, exc_info=exc)
            error = ApiError(500, "internal", f"the service failed to answer this request; quote request id "
                                              f"{rid} when reporting it")
            await send_error(tracking_send, error, rid)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the current request's id, ``-`` outside a request) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


def wrap(app: ASGIApp, max_body_bytes: int, paths_exempt: Iterable[str] = ()) -> ASGIApp:
    """``app`` behind both middlewares: body limit and request id outside, JSON errors inside."""
    return BodyLimitMiddleware(ErrorJSONMiddleware(app), max_body_bytes, paths_exempt)


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then whatever the server sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return pending.pop() if pending else await original()
    return receive


async def _check_multipart(scope: Scope, body: bytes, file_fields: Iterable[str]) -> None:
    """400 unless ``body`` parses as ``multipart/form-data`` with the same parser the app will use (Starlette's):
    a missing boundary or a mangled part would otherwise fail inside the framework as a 500. A file sent where a
    text field belongs is a 422. Keeps the parts' names (``form_fields``) and the text parts as sent
    (``form_text``: the framework reads each part as JSON, so a headline "2024" would become a number)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request  # the app's own parser, so what passes here parses there

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    try:
        form = await Request({**scope, "type": "http"}, once).form()
    except Exception as exc:  # HTTPException from MultiPartException, or the parser's own errors
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise ApiError(400, "invalid_multipart", f"the multipart/form-data body could not be read: {detail}")
    try:
        files, text = set(file_fields), {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name not in files:
                    raise ApiError(422, "invalid_field", f"field '{name}' must be text, not a file", name)
            else:
                text[name] = value
        state = scope.setdefault("state", {})
        state["form_fields"], state["form_text"] = sorted(set(form.keys())), text
    finally:
        await form.close()


class RouteShapeMiddleware:
    """The shape a route takes, checked before the service sees the request: POST only (GET allowed on
    ``get_ok`` routes, passed on as an empty JSON POST), ``application/json`` on ``json_routes`` and
    ``multipart/form-data`` on ``form_routes`` (else 405/415 JSON). A JSON body is parsed here, so bad JSON is our
    400 naming the problem, and kept in ``scope["state"]["json"]`` with any unknown fields for validation; a
    multipart body is test-parsed here, so a missing boundary or a mangled part is a 400, not the framework's 500."""

    def __init__(self, app: Any, json_routes: Iterable[str], form_routes: Iterable[str],
                 get_ok: Iterable[str] = (), file_fields: Iterable[str] = ()) -> None:
        self.app = app
        self.json_routes, self.form_routes, self.get_ok = set(json_routes), set(form_routes), set(get_ok)
        self.file_fields = tuple(file_fields)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        from fitad.serve.requests import parse_json

        path = scope.get("path", "")
        if scope.get("type") != "http" or path not in self.json_routes | self.form_routes:
            return await self.app(scope, receive, send)
        try:
            if scope["method"] == "GET" and path in self.get_ok:
                kept = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
                scope = {**scope, "method": "POST", "headers": [*kept, (b"content-type", b"application/json")]}
            elif scope["method"] != "POST":
                raise ApiError(405, "method_not_allowed", f"{path} takes POST, not {scope['method']}")
            ctype = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
            want = b"multipart/form-data" if path in self.form_routes else b"application/json"
            if ctype != want:
                raise ApiError(415, "unsupported_media_type", f"{path} takes {want.decode()}, not "
                               f"{ctype.decode('latin-1') or 'a body without Content-Type'}")
            body = await _read_body(receive)
            if want == b"application/json":
                scope.setdefault("state", {})["json"] = parse_json(body)
                body = body or b"{}"
            else:
                await _check_multipart(scope, body, self.file_fields)
            receive = _replay(body, receive)
        except ApiError as exc:
            return await send_error(send, exc)
        await self.app(scope, receive, send)
