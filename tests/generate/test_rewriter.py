"""LLM rewriter against a real local OpenAI-style stub server; every failure falls back to the original text."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fitad.generate.rewriter import rewrite_request

REQUEST = "딸기라떼 신메뉴 출시, 따뜻한 분위기"


def completion(content):
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


class Stub:
    """What the server answers (status, body, delay) and what it received."""

    def __init__(self) -> None:
        self.status = 200
        self.body: object = completion("strawberry latte")
        self.delay = 0.0
        self.release = threading.Event()  # set at teardown so a sleeping handler ends at once
        self.requests: list[dict] = []
        self.endpoint = ""


@pytest.fixture
def stub():
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                   "content_type": self.headers.get("Content-Type"), "body": json.loads(raw)})
            if state.delay:
                state.release.wait(state.delay)
            payload = state.body if isinstance(state.body, bytes) else json.dumps(state.body).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_rewrite_sends_an_openai_chat_request_and_returns_the_content(stub):
    stub.body = completion('  "Strawberry latte on a marble table,\n soft morning light"  ')
    result = rewrite_request(REQUEST, endpoint=stub.endpoint + "/", model="qwen2.5-7b", api_key="secret-key",
                             industry="카페")
    assert result.used and result.error is None
    assert result.text == "Strawberry latte on a marble table, soft morning light"
    assert 0 <= result.seconds < 5

    (req,) = stub.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["authorization"] == "Bearer secret-key"
    assert req["content_type"] == "application/json"
    body = req["body"]
    assert body["model"] == "qwen2.5-7b"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "English" in body["messages"][0]["content"]
    assert REQUEST in body["messages"][1]["content"]
    assert "cafe" in body["messages"][1]["content"]


def test_no_api_key_sends_no_authorization(stub):
    result = rewrite_request(REQUEST, endpoint=stub.endpoint, model="m")
    assert result.used and result.text == "strawberry latte"
    assert stub.requests[0]["authorization"] is None
    assert stub.requests[0]["body"]["messages"][1]["content"] == REQUEST


@pytest.mark.parametrize("status,body,expect", [
    (500, {"error": "boom"}, "500"),
    (200, b"not json{", "not JSON"),
    (200, {"choices": []}, "choices[0].message.content"),
    (200, completion("   "), "empty"),
    (200, completion(None), "not a string"),
])
def test_failures_fall_back_to_the_original_text(stub, status, body, expect):
    stub.status, stub.body = status, body
    result = rewrite_request(REQUEST, endpoint=stub.endpoint, model="m", api_key="secret-key")
    assert not result.used
    assert result.text == REQUEST
    assert stub.endpoint in result.error and expect in result.error
    assert "secret-key" not in result.error


def test_slow_server_times_out_within_a_bounded_time(stub):
    stub.delay = 10.0
    t0 = time.monotonic()
    result = rewrite_request(REQUEST, endpoint=stub.endpoint, model="m", timeout_s=0.3)
    elapsed = time.monotonic() - t0
    assert not result.used and result.text == REQUEST
    assert stub.endpoint in result.error and "0.3 s" in result.error
    assert elapsed < 2.0 and result.seconds < 2.0


def test_refused_port_falls_back():
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1"
    t0 = time.monotonic()
    result = rewrite_request(REQUEST, endpoint=endpoint, model="m", timeout_s=2.0)
    assert not result.used and result.text == REQUEST
    assert endpoint in result.error and "connect" in result.error
    assert time.monotonic() - t0 < 3.0


def test_empty_text_is_returned_without_a_call(stub):
    result = rewrite_request("  ", endpoint=stub.endpoint, model="m")
    assert result.text == "  " and not result.used and result.error is None
    assert stub.requests == []


@pytest.mark.parametrize("kwargs,field", [
    (dict(endpoint="ftp://127.0.0.1/v1"), "endpoint"),
    (dict(endpoint="127.0.0.1:8000/v1"), "endpoint"),
    (dict(model=""), "model"),
    (dict(timeout_s=0), "timeout_s"),
    (dict(industry="spaceship"), "spaceship"),
])
def test_bad_arguments_raise_naming_the_field(kwargs, field):
    args = dict(endpoint="http://127.0.0.1:9/v1", model="m") | kwargs
    with pytest.raises(ValueError, match=field):
        rewrite_request(REQUEST, **args)
