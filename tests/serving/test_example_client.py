"""``examples/client.py`` against the real service: one product ad and one person ad over HTTP multipart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from tests.serving.conftest import KEYS, ROOT, _free_port

pytestmark = pytest.mark.timeout(300)
CLIENT = ROOT / "examples" / "client.py"


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_client_writes_a_product_and_a_person_ad(url, tmp_path):
    out = tmp_path / "client"
    done = run_client("--url", url, "--key", KEYS["pro"], "--out", str(out), "--format", "128x160",
                      "--steps", "2")
    assert done.returncode == 0, done.stderr
    for mode in ("product", "person"):
        png, meta = out / f"{mode}.png", out / f"{mode}.json"
        assert png.is_file() and meta.is_file(), done.stdout
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size == (128, 160)
        info = json.loads(meta.read_text(encoding="utf-8"))
        assert info["mode"] == mode and info["tier"] == "pro" and not info["watermarked"]
        assert str(png) in done.stdout


def test_client_says_why_in_one_line(url, tmp_path):
    done = run_client("--url", url, "--key", "not-a-key", "--out", str(tmp_path / "x"))
    assert done.returncode == 1 and not (tmp_path / "x").exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP 401" in lines[0], done.stderr
    down = run_client("--url", f"http://127.0.0.1:{_free_port()}", "--out", str(tmp_path / "y"))
    lines = down.stderr.strip().splitlines()
    assert down.returncode == 1 and len(lines) == 1 and "not reachable" in lines[0], down.stderr
