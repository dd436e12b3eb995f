"""``fitad pipeline submit`` through the real kfp.Client against a local HTTP server that records what it is sent.

No Kubeflow cluster can run here: the stub answers the three calls a submit makes (find the experiment, create
it, create the run) with the smallest valid replies, and the test checks the requests against the committed
compiled pipeline and the documented options.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "character_lora.yaml"


class Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        url = urlparse(self.path)
        self.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query), "body": body,
                              "auth": self.headers.get("Authorization")})
        reply: dict = {}
        if self.command == "POST" and url.path.endswith("/experiments"):
            reply = {"experiment_id": "exp-1", "display_name": body.get("display_name")}
        elif self.command == "POST" and url.path.endswith("/runs"):
            reply = {"run_id": "run-42", "display_name": body.get("display_name"), "state": "PENDING"}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def stub():
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.requests
    server.shutdown()


def fitad(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("fitad")), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_submit_sends_this_pipeline_with_every_parameter(stub):
    host, requests = stub
    done = fitad("pipeline", "submit", "--host", host, "--param", "rank=4", "--param", "trigger=mina",
                 "--experiment", "characters", "--namespace", "team-a", "--run-name", "mina-v1",
                 "--service-account", "fitad-pipeline", env={"FITAD_KFP_TOKEN": "secret-token"})
    assert done.returncode == 0, done.stderr
    assert f"run run-42: {host}/#/runs/details/run-42" in done.stdout
    assert [(r["method"], r["path"]) for r in requests] == [
        ("GET", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/runs")]
    assert all(r["auth"] == "Bearer secret-token" for r in requests)
    lookup, create, run = requests
    assert lookup["query"]["namespace"] == ["team-a"] and "characters" in lookup["query"]["filter"][0]
    assert create["body"] == {"display_name": "characters", "namespace": "team-a"}
    body = run["body"]
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "mina-v1"
    assert body["service_account"] == "fitad-pipeline"
    # the pipeline sent is the committed compiled one (which a test keeps in sync with the code)
    spec, platform = yaml.safe_load_all(COMPILED.read_text(encoding="utf-8"))
    assert body["pipeline_spec"]["pipeline_spec"] == json.loads(json.dumps(spec))
    assert body["pipeline_spec"]["platform_spec"] == json.loads(json.dumps(platform))
    # every parameter explicitly: the compiled defaults, with the two given ones changed
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    expected = {name: p["defaultValue"] for name, p in inputs.items()}
    expected.update(rank=4, trigger="mina")
    sent = body["runtime_config"]["parameters"]
    # the cache fingerprints are filled in (tests/pipeline/test_fingerprint.py checks what they follow)
    assert sent["data_version"] == "synth:8" and len(sent["config_version"]) == len(sent["prep_version"]) == 16
    expected.update({k: sent[k] for k in ("data_version", "prep_version", "config_version")})
    assert set(sent) == set(expected)
    assert all(sent[k] == expected[k] for k in expected), {k: (sent[k], expected[k]) for k in expected
                                                           if sent[k] != expected[k]}


def test_a_bad_parameter_fails_before_anything_is_sent(stub):
    host, requests = stub
    for args, field in ((("--param", "rank=0"), "rank"), (("--param", "family=sdxl"), "family"),
                        (("--param", "text_box_threshold=3"), "text_box_threshold"),
                        (("--param", "nonsense=1"), "nonsense")):
        done = fitad("pipeline", "submit", "--host", host, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert field in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert requests == []


def test_an_unreachable_host_is_one_clear_line():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = fitad("pipeline", "submit", "--host", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"submitting to http://127.0.0.1:{port} failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_without_local_says_what_to_do():
    done = fitad("pipeline", "run")
    assert done.returncode == 2
    assert "--local" in done.stderr and "submit" in done.stderr
