"""ASGI middleware driven directly with scope/receive/send: body limit before reading, request ids, JSON errors."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest

from fitad.serve.errors import ApiError, request_id_var
from fitad.serve.middleware import (BodyLimitMiddleware, ErrorJSONMiddleware, RequestIdFilter, safe_request_id,
                                    wrap)

LIMIT = 1000


def scope_for(path="/txt2img", headers=(), method="POST"):
    return {"type": "http", "method": method, "path": path, "headers": [(k.lower(), v) for k, v in headers]}


class Client:
    """Feeds body chunks through ``receive`` (counting what the middleware pulled) and collects what is sent."""

    def __init__(self, chunks=(b"",)) -> None:
        self.chunks = list(chunks)
        self.pulled = 0          # body bytes handed to the middleware
        self.receive_calls = 0
        self.sent: list[dict] = []

    async def receive(self):
        self.receive_calls += 1
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


def run(app, scope, client):
    asyncio.run(app(scope, client.receive, client.send))
    return client


class EchoApp:
    """Reads the whole body, answers 200 with its length and the request id it saw."""

    def __init__(self) -> None:
        self.called = 0
        self.seen = 0

    async def __call__(self, scope, receive, send):
        self.called += 1
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            self.seen += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = json.dumps({"bytes": self.seen, "rid_scope": scope["state"]["request_id"],
                           "rid_var": request_id_var.get()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def test_small_body_passes_with_a_request_id():
    app = EchoApp()
    client = run(BodyLimitMiddleware(app, LIMIT), scope_for(headers=[(b"content-length", b"500")]),
                 Client([b"a" * 200, b"b" * 300]))
    assert client.status == 200 and client.json["bytes"] == 500
    rid = client.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)                  # a new uuid4 hex
    assert client.json["rid_scope"] == rid and client.json["rid_var"] == rid
    assert request_id_var.get() == ""                         # reset after the request


def test_content_length_over_the_limit_is_413_before_any_byte_is_read():
    app = EchoApp()
    client = Client([b"x" * 600] * 20)
    run(BodyLimitMiddleware(app, LIMIT), scope_for(headers=[(b"content-length", b"12000")]), client)
    assert client.status == 413
    assert client.receive_calls == 0 and client.pulled == 0   # not a byte read
    assert app.called == 0
    body = client.json["error"]
    assert body["code"] == "payload_too_large" and "1,000 bytes" in body["message"]
    assert body["request_id"] == client.headers["x-request-id"]
    assert client.headers["content-type"] == "application/json"


def test_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit():
    app = EchoApp()
    client = Client([b"y" * 300] * 10)                         # 3000 bytes, no Content-Length
    run(BodyLimitMiddleware(app, LIMIT), scope_for(), client)
    assert client.status == 413 and client.json["error"]["code"] == "payload_too_large"
    assert client.pulled == 1200 and client.receive_calls == 4  # stopped at the chunk that crossed 1000
    assert app.seen == 900                                     # the app never saw the crossing chunk
    assert sum(1 for m in client.sent if m["type"] == "http.response.start") == 1


def test_lying_content_length_is_caught_by_counting():
    client = Client([b"z" * 600, b"z" * 600])
    run(BodyLimitMiddleware(EchoApp(), LIMIT), scope_for(headers=[(b"content-length", b"10")]), client)
    assert client.status == 413 and client.pulled == 1200


def test_app_that_swallows_the_error_cannot_answer_instead_of_413():
    class Swallower:
        async def __call__(self, scope, receive, send):
            try:
                while (await receive()).get("more_body"):
                    pass
            except Exception:
                assert (await receive())["type"] == "http.disconnect"   # asking again: the body is over
                await send({"type": "http.response.start", "status": 400, "headers": []})
                await send({"type": "http.response.body", "body": b"bad form"})

    client = run(BodyLimitMiddleware(Swallower(), LIMIT), scope_for(), Client([b"q" * 700] * 3))
    assert client.status == 413 and [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


def test_exempt_paths_are_not_limited_but_get_ids():
    client = run(BodyLimitMiddleware(EchoApp(), LIMIT, paths_exempt=("/admin/",)),
                 scope_for("/admin/upload", headers=[(b"content-length", b"3000")]), Client([b"w" * 3000]))
    assert client.status == 200 and client.json["bytes"] == 3000 and "x-request-id" in client.headers


@pytest.mark.parametrize("value", [b"abc", b"-5", b"1e3", b" "])
def test_malformed_content_length_is_400(value):
    client = run(BodyLimitMiddleware(EchoApp(), LIMIT), scope_for(headers=[(b"content-length", value)]), Client())
    assert client.status == 400 and client.json["error"]["code"] == "invalid_request"


def test_incoming_request_id_is_kept_only_when_safe():
    client = run(BodyLimitMiddleware(EchoApp(), LIMIT), scope_for(headers=[(b"x-request-id", b"trace-42.a_b")]),
                 Client())
    assert client.headers["x-request-id"] == "trace-42.a_b" == client.json["rid_scope"]
    for bad in (b"has space", b"x" * 65, b"new\nline", b"\xff\xfe", b"<script>"):
        client = run(BodyLimitMiddleware(EchoApp(), LIMIT), scope_for(headers=[(b"x-request-id", bad)]), Client())
        assert re.fullmatch(r"[0-9a-f]{32}", client.headers["x-request-id"])
    assert safe_request_id(None) != safe_request_id(None)


def test_app_set_request_id_header_is_not_duplicated():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": [(b"x-request-id", b"other")]})
        await send({"type": "http.response.body", "body": b""})

    client = run(BodyLimitMiddleware(app, LIMIT), scope_for(headers=[(b"x-request-id", b"mine")]), Client())
    start = client.sent[0]
    assert [v for k, v in start["headers"] if k == b"x-request-id"] == [b"mine"]


def test_uncaught_exception_is_500_json_without_traceback(caplog):
    async def boom(scope, receive, send):
        raise KeyError("/secret/path/model.safetensors")

    caplog.set_level(logging.ERROR, logger="fitad.serve")
    client = run(wrap(boom, LIMIT), scope_for(headers=[(b"x-request-id", b"req-500")]), Client())
    assert client.status == 500 and client.headers["x-request-id"] == "req-500"
    err = client.json["error"]
    assert err["code"] == "internal" and err["request_id"] == "req-500" and "req-500" in err["message"]
    text = json.dumps(client.json)
    assert "Traceback" not in text and "secret" not in text and "KeyError" not in text
    record = next(r for r in caplog.records if "req-500" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is KeyError   # the traceback goes to the log


def test_api_error_from_the_app_becomes_its_json_response():
    async def busy(scope, receive, send):
        raise ApiError(429, "busy", "the queue is full; retry in 5 s", headers={"Retry-After": "5"})

    client = run(wrap(busy, LIMIT), scope_for(), Client())
    assert client.status == 429 and client.headers["retry-after"] == "5"
    assert client.json["error"]["code"] == "busy"
    assert client.json["error"]["request_id"] == client.headers["x-request-id"]


def test_error_after_the_response_started_is_reraised():
    async def half(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError):
        run(ErrorJSONMiddleware(half), scope_for(), Client())


def test_non_http_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    run(wrap(app, LIMIT), {"type": "lifespan"}, Client())
    assert seen == ["lifespan"]


def test_request_id_filter_puts_the_id_on_log_records():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    RequestIdFilter().filter(record)
    assert record.request_id == "-"
    token = request_id_var.set("rid-7")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
        RequestIdFilter().filter(record)
        assert record.request_id == "rid-7"
    finally:
        request_id_var.reset(token)


# ---------------------------------------------------------------- through a real HTTP server

@pytest.fixture(scope="module")
def live_server():
    """uvicorn on 127.0.0.1 serving an echo app behind wrap(); yields (host, port, app)."""
    uvicorn = pytest.importorskip("uvicorn")
    import socket
    import threading
    import time

    app = EchoApp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(wrap(app, LIMIT), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield "127.0.0.1", port, app
    server.should_exit = True
    thread.join(timeout=5)


def _read_response(sock) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_real_server_answers_413_to_a_huge_content_length_without_the_body(live_server):
    import socket

    host, port, app = live_server
    before = app.called
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 50000000\r\n\r\n")          # headers only: the 50 MB never come
        status, headers, body = _read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers["x-request-id"] and app.called == before


def test_real_server_cuts_a_chunked_upload(live_server):
    import socket

    host, port, _ = live_server
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /ad/product HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):                                        # 4 x 400 bytes > 1000
            sock.sendall(b"190\r\n" + b"p" * 400 + b"\r\n")
        status, headers, body = _read_response(sock)
    assert status == 413 and json.loads(body)["error"]["request_id"] == headers["x-request-id"]


def test_real_server_passes_a_small_body(live_server):
    import socket

    host, port, _ = live_server
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /copy HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc-1\r\nContent-Length: 5\r\n\r\nhello")
        status, headers, body = _read_response(sock)
    assert status == 200 and headers["x-request-id"] == "abc-1"


# ---- RouteShapeMiddleware: method, content type and a body that parses, before the app sees the request
def _shape(app):
    from fitad.serve.middleware import RouteShapeMiddleware

    return RouteShapeMiddleware(app, json_routes=["/txt2img", "/loras"], form_routes=["/ad/product"],
                                get_ok=["/loras"], file_fields=["image"])


def _multipart(files=None, data=None):
    """A real multipart body and its Content-Type, encoded by httpx (an encoder independent of the parser)."""
    import httpx

    req = httpx.Request("POST", "http://x/ad/product", files=files or {"image": ("a.png", b"\x89PNG...", "image/png")},
                        data=data or {"headline": "가을 신메뉴"})
    return req.read(), req.headers["content-type"].encode()


def test_route_shape_passes_a_valid_multipart_body_through_unchanged():
    body, ctype = _multipart()
    app = EchoApp()
    client = run(_shape(app), {**scope_for("/ad/product", [(b"content-type", ctype)]), "state": {"request_id": "r"}},
                 Client([body[:50], body[50:]]))
    assert client.status == 200 and app.seen == len(body)


@pytest.mark.parametrize("ctype, body, why", [
    (b"multipart/form-data", b"", "boundary"),
    (b"multipart/form-data; boundary=abc", b"--abc\r\n[]--abc--\r\n", ""),
    (b"multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data\r\n\r\nx\r\n--abc--\r\n", ""),
])
def test_route_shape_refuses_a_multipart_body_that_does_not_parse(ctype, body, why):
    app = EchoApp()
    client = run(_shape(app), scope_for("/ad/product", [(b"content-type", ctype)]), Client([body]))
    assert client.status == 400 and app.called == 0
    assert client.json["error"]["code"] == "invalid_multipart" and why in client.json["error"]["message"].lower()


def test_route_shape_keeps_text_parts_as_sent_and_refuses_a_file_where_text_belongs():
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope["state"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    body, ctype = _multipart(data={"headline": "2024", "request": '{"steps": 3}'})
    client = run(_shape(app), scope_for("/ad/product", [(b"content-type", ctype)]), Client([body]))
    assert client.status == 204
    assert seen["form_text"] == {"headline": "2024", "request": '{"steps": 3}'}
    assert seen["form_fields"] == ["headline", "image", "request"]

    body, ctype = _multipart(files={"image": ("a.png", b"x", "image/png"),
                                    "headline": ("h.txt", b"\x80abc", "text/plain")})
    app2 = EchoApp()
    client = run(_shape(app2), scope_for("/ad/product", [(b"content-type", ctype)]), Client([body]))
    assert client.status == 422 and client.json["error"]["field"] == "headline" and app2.called == 0


def test_route_shape_checks_method_content_type_and_json():
    for path, method, headers, body, status in [
        ("/ad/product", "PUT", [(b"content-type", b"multipart/form-data; boundary=a")], b"", 405),
        ("/ad/product", "POST", [(b"content-type", b"application/json")], b"{}", 415),
        ("/txt2img", "POST", [(b"content-type", b"text/plain")], b"{}", 415),
        ("/txt2img", "POST", [(b"content-type", b"application/json")], b"{not json", 400),
    ]:
        app = EchoApp()
        client = run(_shape(app), scope_for(path, headers, method), Client([body]))
        assert (client.status, app.called) == (status, 0), (path, method, body)


def test_route_shape_turns_an_allowed_get_into_an_empty_json_post():
    seen = {}

    async def app(scope, receive, send):
        seen.update(method=scope["method"], json=scope["state"]["json"], body=(await receive())["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = run(_shape(app), scope_for("/loras", [], "GET"), Client([b""]))
    assert client.status == 204 and seen == {"method": "POST", "json": {}, "body": b"{}"}
