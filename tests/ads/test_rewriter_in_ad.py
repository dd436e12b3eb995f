"""The optional LLM rewriter inside make_ad: its text becomes the request; a dead endpoint changes nothing."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fitad.ads.make import make_ad

from .conftest import ad_config

REWRITTEN = "strawberry latte on a marble counter"


@pytest.fixture
def llm_stub():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": REWRITTEN}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_rewritten_request_drives_the_prompt(renderer, llm_stub, monkeypatch):
    endpoint, seen = llm_stub
    monkeypatch.setenv("FITAD_REWRITER_API_KEY", "sk-test")
    result = make_ad("txt2img", ad_config(rewriter_endpoint=endpoint, rewriter_model="tiny-llm"), renderer,
                     prompt="딸기라떼 광고", seed=1)
    assert seen and seen[0]["path"] == "/v1/chat/completions" and seen[0]["body"]["model"] == "tiny-llm"
    assert seen[0]["auth"] == "Bearer sk-test"
    assert "딸기라떼 광고" in json.dumps(seen[0]["body"], ensure_ascii=False)
    meta = result.metadata
    assert meta["rewriter"]["used"] is True and meta["rewriter"]["original"] == "딸기라떼 광고"
    assert "strawberry latte" in meta["prompt"]["used"]


def test_unreachable_rewriter_falls_back_to_the_request(renderer):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ad_config(rewriter_endpoint=f"http://127.0.0.1:{port}/v1", rewriter_timeout_s=2.0)
    result = make_ad("txt2img", config, renderer, prompt="딸기라떼 광고", seed=1)
    plain = make_ad("txt2img", ad_config(), renderer, prompt="딸기라떼 광고", seed=1)
    assert result.metadata["rewriter"]["used"] is False and str(port) in result.metadata["rewriter"]["error"]
    assert result.metadata["prompt"]["used"] == plain.metadata["prompt"]["used"]
    assert (result.image == plain.image).all()
