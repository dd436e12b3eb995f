"""A bad-input corpus against the real service: each case is a specific 4xx with a JSON ``error.code``; the service
stays healthy afterwards. Every case uses the pro key (no quota), so nothing here spends the free tier's images."""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib

import httpx
import pytest
from PIL import Image

from tests.serving.conftest import auth

PRO = auth("pro")


def _png(size=(128, 128)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A 65-byte PNG claiming 10000 x 8000 pixels (80 MP, 240 MB decoded) and no pixel data. (A claim above
    PIL's own bomb limit, 179 MP, is refused by PIL before the size check: 400 invalid_image.)"""
    ihdr = struct.pack(">IIBBBBB", 10_000, 8_000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128)).save(buf, format="GIF")
    return buf.getvalue()


GOOD = _png()
J = {**PRO, "Content-Type": "application/json"}
T = "/txt2img"
P = "/ad/product"


def js(body: dict) -> dict:
    import json
    return {"content": json.dumps(body).encode(), "headers": J}


def raw(body: bytes, ctype: str | None = "application/json") -> dict:
    return {"content": body, "headers": {**PRO, **({"Content-Type": ctype} if ctype else {})}}


def up(data: bytes | None = GOOD, ctype: str = "image/png", request: str | None = '{"format": "128x128"}',
       field: str = "image") -> dict:
    out: dict = {"headers": PRO, "data": {"request": request} if request is not None else {}}
    if data is None:  # no file: the fields alone, still as multipart (a part without a file name)
        return {"headers": PRO, "files": {"request": (None, request or "{}")}}
    out["files"] = {field: ("f.png", data, ctype)}
    return out


# (id, method, route, request kwargs, status, error code, field or None)
CASES = [
    ("bad-json", "POST", T, raw(b'{"prompt": '), 400, "invalid_request", None),
    ("json-array", "POST", T, raw(b"[1, 2]"), 400, "invalid_request", None),
    ("non-utf8-body", "POST", T, raw(b'{"prompt": "\xff\xfe caf\xe9"}'), 400, "invalid_request", None),
    ("nan-guidance", "POST", T, raw(b'{"prompt": "x", "guidance": NaN}'), 422, "invalid_field", "guidance"),
    ("inf-seed", "POST", T, raw(b'{"prompt": "x", "seed": Infinity}'), 422, "invalid_field", "seed"),
    ("prompt-100kB", "POST", T, js({"prompt": "a" * 100_000}), 422, "invalid_field", "prompt"),
    ("prompt-missing", "POST", T, js({"format": "128x128"}), 422, "invalid_field", "prompt"),
    ("prompt-blank", "POST", T, js({"prompt": "   "}), 422, "invalid_field", "prompt"),
    ("prompt-number", "POST", T, js({"prompt": 5}), 422, "invalid_field", "prompt"),
    ("prompt-nul", "POST", T, js({"prompt": "a\x00b"}), 422, "invalid_field", "prompt"),
    ("extra-field", "POST", T, js({"prompt": "x", "bogus": 1}), 422, "invalid_field", "bogus"),
    ("steps-negative", "POST", T, js({"prompt": "x", "steps": -1}), 422, "invalid_field", "steps"),
    ("steps-huge", "POST", T, js({"prompt": "x", "steps": 10**9}), 422, "invalid_field", "steps"),
    ("steps-text", "POST", T, js({"prompt": "x", "steps": "ten"}), 422, "invalid_field", "steps"),
    ("steps-fraction", "POST", T, js({"prompt": "x", "steps": 2.5}), 422, "invalid_field", "steps"),
    ("steps-bool", "POST", T, js({"prompt": "x", "steps": True}), 422, "invalid_field", "steps"),
    ("guidance-negative", "POST", T, js({"prompt": "x", "guidance": -1}), 422, "invalid_field", "guidance"),
    ("guidance-huge", "POST", T, js({"prompt": "x", "guidance": 1e300}), 422, "invalid_field", "guidance"),
    ("seed-negative", "POST", T, js({"prompt": "x", "seed": -5}), 422, "invalid_field", "seed"),
    ("seed-huge", "POST", T, js({"prompt": "x", "seed": 2**70}), 422, "invalid_field", "seed"),
    ("lora-scale-huge", "POST", T, js({"prompt": "x", "lora_scale": 99}), 422, "invalid_field", "lora_scale"),
    ("lora-traversal", "POST", T, js({"prompt": "x", "lora": "../../etc/passwd"}), 422, "invalid_field", "lora"),
    ("lora-absolute", "POST", T, js({"prompt": "x", "lora": "/etc/passwd"}), 422, "invalid_field", "lora"),
    ("lora-url", "POST", T, js({"prompt": "x", "lora": "https://example.com/a.safetensors"}), 422, "invalid_field",
     "lora"),
    ("lora-s3", "POST", T, js({"prompt": "x", "lora": "s3://bucket/lora"}), 422, "invalid_field", "lora"),
    ("format-unknown", "POST", T, js({"prompt": "x", "format": "tiktok_9000"}), 422, "invalid_field", "format"),
    ("format-huge", "POST", T, js({"prompt": "x", "format": "100000x100000"}), 422, "invalid_field", "format"),
    ("format-tiny", "POST", T, js({"prompt": "x", "format": "8x8"}), 422, "invalid_field", "format"),
    ("industry-unknown", "POST", T, js({"prompt": "x", "industry": "spaceship"}), 422, "invalid_field", "industry"),
    ("lang-unknown", "POST", T, js({"prompt": "x", "lang": "fr"}), 422, "invalid_field", "lang"),
    ("text-plain", "POST", T, raw(b'{"prompt": "x"}', "text/plain"), 415, "unsupported_media_type", None),
    ("form-urlencoded", "POST", T, raw(b"prompt=x", "application/x-www-form-urlencoded"), 415,
     "unsupported_media_type", None),
    ("get-on-post", "GET", T, {"headers": PRO}, 405, "method_not_allowed", None),
    ("put-on-post", "PUT", "/copy", js({}), 405, "method_not_allowed", None),
    ("copy-industry", "POST", "/copy", js({"industry": "spaceship"}), 422, "invalid_field", "industry"),
    ("copy-extra", "POST", "/copy", js({"industry": "cafe", "prompt": "x"}), 422, "invalid_field", "prompt"),
    ("copy-long-name", "POST", "/copy", js({"shop_name": "x" * 5000}), 422, "invalid_field", "shop_name"),
    ("bad-auth-scheme", "POST", T, {"content": b'{"prompt": "x"}', "headers": {
        "Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"}}, 401, "unauthorized", None),
    ("progress-unknown", "POST", "/jobs/progress", js({"task_id": "../../etc"}), 404, "not_found", "job_id"),
    ("zero-byte-image", "POST", P, up(b""), 400, "empty_upload", "image"),
    ("corrupt-image", "POST", P, up(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50), 400, "invalid_image", "image"),
    ("truncated-image", "POST", P, up(GOOD[: len(GOOD) // 2]), 400, "invalid_image", "image"),
    ("text-as-png", "POST", P, up(b"hello, I am not a picture", "image/png"), 415, "unsupported_media_type", "image"),
    ("gif", "POST", P, up(_gif(), "image/gif"), 415, "unsupported_media_type", "image"),
    ("png-bomb-header", "POST", P, up(_bomb()), 413, "payload_too_large", "image"),
    ("tiny-image", "POST", P, up(_png((8, 8))), 400, "invalid_image", "image"),
    ("image-missing", "POST", P, up(None), 422, "invalid_field", "image"),
    ("image-as-url-text", "POST", P, {"headers": PRO, "files": {"image": (None, "http://169.254.169.254/latest/")}},
     415, "unsupported_media_type", "image"),
    ("text-field-as-binary-file", "POST", P, {"headers": PRO, "files": {"image": ("f.png", GOOD, "image/png"),
                                                                     "headline": ("h.bin", b"\x80abc", "text/plain")}},
     422, "invalid_field", "headline"),
    ("ad-unknown-part", "POST", P, {**up(), "data": {"request": '{"format": "128x128"}', "bogus": "1"}}, 422,
     "invalid_field", "bogus"),
    ("ad-json-body", "POST", P, js({"format": "128x128"}), 415, "unsupported_media_type", None),
    ("ad-request-bad-json", "POST", P, up(request="{not json"), 400, "invalid_request", None),
    ("ad-request-array", "POST", P, up(request="[1]"), 400, "invalid_request", None),
    ("ad-steps-zero", "POST", P, up(request='{"steps": 0}'), 422, "invalid_field", "steps"),
    ("ad-lora-path", "POST", P, up(request='{"lora": "../../etc/passwd"}'), 422, "invalid_field", "lora"),
    ("ad-format-unknown", "POST", "/ad/compose", up(request='{"format": "poster"}'), 422, "invalid_field", "format"),
]


@pytest.mark.parametrize("name, method, route, kwargs, status, code, field", CASES, ids=[c[0] for c in CASES])
def test_bad_input(url, name, method, route, kwargs, status, code, field):
    r = httpx.request(method, f"{url}{route}", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field, error
    assert "Traceback" not in r.text


def test_30mb_body_refused_by_content_length_before_upload(url):
    """Only the headers are sent: the 413 arrives without a byte of the 30 MB body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(f"POST /ad/product HTTP/1.1\r\nHost: {host}\r\nAuthorization: {PRO['Authorization']}\r\n"
                  "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 30000000\r\n\r\n".encode())
        reply = ""
        while "payload_too_large" not in reply:
            part = s.recv(65536).decode("latin-1")
            if not part:
                break
            reply += part
        elapsed = time.monotonic() - t0
    assert reply.startswith("HTTP/1.1 413") and "payload_too_large" in reply, reply
    assert elapsed < 5


def test_chunked_body_over_the_limit(url):
    def chunks():
        for _ in range(40):
            yield b"x" * 100_000
    r = httpx.post(f"{url}/txt2img", content=chunks(), headers=J, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_still_healthy_after_the_corpus(url):
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
    r = httpx.post(f"{url}/txt2img", json={"prompt": "still here", "format": "128x128", "seed": 1}, headers=PRO,
                   timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
