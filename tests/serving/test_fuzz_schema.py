"""Property-based fuzzing of the real service's OpenAPI schema with schemathesis: whatever the generated request
(valid or not: random JSON, random multipart bytes as images, out-of-range numbers, odd strings, missing parts),
the answer is never a 5xx, and the service is still ready afterwards.

schemathesis runs as its own CLI against the live server (its pytest plugin does not load under pytest 9).
The service publishes its request models with this deployment's bounds (steps, text lengths, formats), so the
fuzzer also sends valid requests that render. It gets a server of its own (steps capped at 3 to keep those renders
short; fuzzed background tasks do not share a task database with the other tests). Requests carry a pro key so
they reach the handlers (a free key runs out of quota after three images; an anonymous request stops at 401); the
example count per operation and the seed are fixed to keep the run bounded and repeatable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("schemathesis")

from tests.serving.conftest import KEYS, Server, build_world  # noqa: E402

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory, tiny_models_root):
    world = build_world(tmp_path_factory.mktemp("fuzz"), tiny_models_root, serve={"max_steps": 3, "max_queue": 8})
    server = Server(world.env, world.root / "serve.log").wait_ready()
    yield server.url
    server.stop()


def test_the_schema_publishes_the_request_bounds(fuzz_url):
    spec = httpx.get(f"{fuzz_url}/docs.json", timeout=10).json()
    body = spec["paths"]["/txt2img"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    props = body["properties"]
    steps = props["steps"]["anyOf"][0] if "anyOf" in props["steps"] else props["steps"]  # BentoML keeps one branch
    assert steps["maximum"] == 3  # this deployment's serve.max_steps
    assert props["prompt"]["minLength"] == 1 and body["required"] == ["prompt"]
    assert "instagram_story" in json.dumps(props["format"])
    form = spec["paths"]["/ad/product"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "image" in form["required"] and "headline" in form["properties"]


def test_fuzzed_requests_never_get_a_server_error(fuzz_url, tmp_path):
    url = fuzz_url
    report = tmp_path / "schemathesis.json"
    cmd = [str(SCHEMATHESIS), "run", f"{url}/docs.json", "--url", url,
           "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261122",
           "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "60",
           "--generation-database", "none", "--suppress-health-check", "all", "--no-color",
           "--header", f"Authorization: Bearer {KEYS['pro']}",
           "--report", "json", "--report-json-path", str(report)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays there
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis found failures:\n{out[-6000:]}"
    assert report.exists(), out[-3000:]
    summary = json.loads(report.read_text())
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 15, summary["operations"]
    # Valid requests reached the renderer too, not only refusals.
    rates = summary["valid_rates"]
    for op in ("POST /txt2img", "POST /copy"):
        accepted = sum(phase["accepted"] for phase in rates[op].values())
        assert accepted >= 3, f"{op}: only {accepted} generated requests were accepted: {rates[op]}"
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
