"""The real service over HTTP: every endpoint, auth, quotas across a restart, alias moves, LoRA swaps, tasks."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import Server, auth

pytestmark = pytest.mark.timeout(300)


def png(size=(160, 120), colour=(200, 30, 30)) -> bytes:
    """A red box on a light grey table (a product the OpenCV segmenter finds)."""
    arr = np.full((size[1], size[0], 3), 225, np.uint8)
    h, w = size[1], size[0]
    arr[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = colour
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def face_png() -> bytes:
    """scikit-image's astronaut (one frontal face), the person photo."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((256, 256)).save(buf, format="PNG")
    return buf.getvalue()


def meta(r: httpx.Response) -> dict:
    return json.loads(r.headers["x-fitad-meta"])


def decoded(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content))


def test_txt2img_png_of_the_format_with_metadata(url):
    r = httpx.post(f"{url}/txt2img", json={"prompt": "a cup of coffee", "format": "128x160", "seed": 5},
                   headers=auth("pro"), timeout=120)
    assert decoded(r).size == (128, 160)
    m = meta(r)
    assert m["seed"] == 5 and m["tier"] == "pro" and m["lora"]["version"] == "1"
    assert r.headers["x-request-id"]


def form(request: dict | None = None, **files: bytes) -> dict:
    out = {"files": {k: (f"{k}.png", v, "image/png") for k, v in files.items()}}
    if request is not None:
        out["data"] = {"request": json.dumps(request)}
    return out


def test_product_ad_keeps_the_uploaded_product(url):
    r = httpx.post(f"{url}/ad/product", headers=auth("pro"), timeout=120,
                   **form({"format": "128x128", "seed": 2, "headline": "SALE"}, image=png()))
    assert decoded(r).size == (128, 128)
    m = meta(r)
    assert m["mode"] == "product" and m["kept"]["product"]["kept_pixels"] > 0 and not m["watermarked"]


def test_compose_and_person_and_advanced(url):
    r = httpx.post(f"{url}/ad/compose", headers=auth("pro"), timeout=60,
                   files={"image": ("a.png", png(), "image/png")}, data={"headline": '"OPEN"', "format": "128x128"})
    assert decoded(r).size == (128, 128) and meta(r)["mode"] == "compose"
    r = httpx.post(f"{url}/ad/advanced", headers=auth("pro"), timeout=120,
                   **form({"format": "128x128", "seed": 1}, image=face_png(), product_image=png()))
    assert decoded(r).size == (128, 128) and meta(r)["mode"] == "advanced"
    r = httpx.post(f"{url}/ad/person", headers=auth("pro"), timeout=120,
                   **form({"format": "128x128", "seed": 1}, image=face_png()))
    assert decoded(r).size == (128, 128) and meta(r)["mode"] == "person"
    r = httpx.post(f"{url}/ad/person", headers=auth("pro"), timeout=120, **form({"format": "128x128"}, image=png()))
    assert r.status_code == 422 and r.json()["error"]["field"] == "image"     # no face: a 4xx, never a 500


def test_copy_and_loras_through_the_bentoml_client(url):
    import bentoml

    with bentoml.SyncHTTPClient(url, token=auth("pro")["Authorization"].split()[1], timeout=60) as client:
        copy = client.copy(industry="cafe", lang="en", shop_name="Bean")
        assert copy["caption"] and copy["hashtags"] and copy["lang"] == "en"
        loras = client.loras()
        assert loras["model_name"] == "fitad-test" and loras["served"]["version"] == "1"
    got = httpx.get(f"{url}/loras", headers=auth("free")).json()      # GET works too
    assert got["approved"] == "1" and {v["version"] for v in got["available"]} >= {"1", "2"}


def test_auth_tiers(url):
    r = httpx.post(f"{url}/txt2img", json={"prompt": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized" and "bearer" in \
        r.headers["www-authenticate"].lower()
    assert httpx.post(f"{url}/txt2img", json={"prompt": "x"}, headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    r = httpx.post(f"{url}/admin/reload", json={}, headers=auth("free"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert httpx.post(f"{url}/admin/reload", json={}, headers=auth("pro")).status_code == 403
    r = httpx.post(f"{url}/admin/reload", json={}, headers=auth("admin"))
    assert r.status_code == 200 and set(r.json()) >= {"before", "after", "changed"}


def _free_image(url: str) -> httpx.Response:
    return httpx.post(f"{url}/ad/compose", headers=auth("free"), timeout=60,
                      **form({"format": "128x128", "headline": "hi"}, image=png()))


def test_free_quota_survives_a_restart(url, world):
    assert httpx.get(f"{url}/quota", headers=auth("free")).json() == {"tier": "free", "remaining": 3,
                                                                     "daily_limit": 3}
    for _ in range(3):
        r = _free_image(url)
        assert r.status_code == 200 and meta(r)["watermarked"]
    r = _free_image(url)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded" and int(r.headers["retry-after"]) > 0
    assert httpx.post(f"{url}/quota", json={}, headers=auth("free")).json()["remaining"] == 0
    assert httpx.get(f"{url}/quota", headers=auth("pro")).json()["remaining"] is None
    # The first server keeps running (it is the session's), so the second gets its own BentoML home: two live
    # servers on one home share BentoML's task database. The quota database is the one under test.
    (world.root / "bentoml-restart").mkdir(exist_ok=True)
    env = {**world.env, "BENTOML_HOME": str(world.root / "bentoml-restart")}
    second = Server(env, world.root / "serve-restart.log").wait_ready()
    try:
        r = _free_image(second.url)
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
        assert httpx.get(f"{second.url}/quota", headers=auth("free")).json()["remaining"] == 0
    finally:
        second.stop()


def _served_version(url: str) -> str | None:
    served = httpx.get(f"{url}/loras", headers=auth("pro")).json()["served"]
    return served and served["version"]


def _wait_served(url: str, version: str, deadline_s: float = 30.0) -> float:
    t0 = time.monotonic()
    while _served_version(url) != version:
        assert time.monotonic() - t0 < deadline_s, f"served version did not become {version} in {deadline_s} s"
        time.sleep(0.3)
    return time.monotonic() - t0


def test_alias_move_is_picked_up_without_restart(url, world):
    from fitad.tracking.registry import Registry

    registry = Registry(world.uri)
    assert _served_version(url) == "1"
    registry.approve(world.model, "2", "move test", by="test")
    try:
        _wait_served(url, "2")
        r = httpx.post(f"{url}/txt2img", json={"prompt": "tea", "format": "128x128", "seed": 1},
                       headers=auth("pro"), timeout=120)
        assert decoded(r) and meta(r)["lora"]["version"] == "2"
    finally:
        registry.approve(world.model, "1", "move back", by="test")
        _wait_served(url, "1")


@pytest.mark.parametrize("spec, name, version", [("fitad-other", "fitad-other", "1"),
                                                 ("fitad-test/2", "fitad-test", "2")])
def test_per_request_lora(url, spec, name, version):
    r = httpx.post(f"{url}/txt2img", json={"prompt": "tea", "format": "128x128", "seed": 1, "lora": spec},
                   headers=auth("pro"), timeout=120)
    lora = meta(r)["lora"]
    assert decoded(r) and (lora["name"], lora["version"]) == (name, version)
    r = httpx.post(f"{url}/txt2img", json={"prompt": "tea", "format": "128x128", "lora": "fitad-nope"},
                   headers=auth("pro"), timeout=60)
    assert 400 <= r.status_code < 500 and r.json()["error"]["field"] == "lora"


def test_task_submit_progress_result(url):
    r = httpx.post(f"{url}/jobs/txt2img/submit", json={"prompt": "a cake", "format": "128x128", "seed": 3,
                                                       "steps": 4}, headers=auth("pro"))
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    seen, deadline = [], time.monotonic() + 60
    while True:
        p = httpx.post(f"{url}/jobs/progress", json={"task_id": task_id}, headers=auth("pro"))
        if p.status_code == 200:
            seen.append(p.json())
            if p.json()["state"] in ("done", "failed"):
                break
        else:
            assert p.status_code == 404 and not seen, p.text   # not started yet
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen[-1]["state"] == "done" and seen[-1]["total"] >= 1 and seen[-1]["step"] == seen[-1]["total"]
    assert httpx.get(f"{url}/jobs/txt2img/status", params={"task_id": task_id}).json()["status"] == "completed"
    result = httpx.get(f"{url}/jobs/txt2img/get", params={"task_id": task_id})
    assert decoded(result).size == (128, 128)
    missing = httpx.post(f"{url}/jobs/progress", json={"task_id": "nope"}, headers=auth("pro"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_a_synchronous_ad_reports_progress_under_the_callers_job_id(url):
    """The page's flow: send the ad with ``X-Fitad-Job`` and poll ``/jobs/progress`` while it renders."""
    import threading
    import uuid

    job = uuid.uuid4().hex
    done: dict = {}

    def render():
        done["r"] = httpx.post(f"{url}/ad/product", timeout=120, headers={**auth("pro"), "X-Fitad-Job": job},
                               **form({"format": "128x128", "seed": 5, "steps": 6}, image=png()))
    thread = threading.Thread(target=render)
    thread.start()
    seen, deadline = [], time.monotonic() + 60
    while thread.is_alive() or not seen or seen[-1]["state"] not in ("done", "failed"):
        p = httpx.post(f"{url}/jobs/progress", json={"task_id": job}, headers=auth("pro"))
        if p.status_code == 200:
            seen.append(p.json())
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.02)
    thread.join()
    assert done["r"].status_code == 200 and meta(done["r"])["seed"] == 5
    assert seen[-1]["state"] == "done" and seen[-1]["step"] == seen[-1]["total"] >= 1
    bad = httpx.post(f"{url}/txt2img", json={"prompt": "x"}, headers={**auth("pro"), "X-Fitad-Job": "../x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "X-Fitad-Job"


def test_a_text_part_that_looks_like_a_number_stays_text(url):
    """A headline sent as its own multipart part, "2024": the framework reads parts as JSON, the service does not."""
    r = httpx.post(f"{url}/ad/compose", headers=auth("pro"), timeout=60, files={"image": ("a.png", png(), "image/png")},
                   data={"headline": "2024", "format": "128x128", "steps": "2"})
    from fitad.ads.result import COPY_KEY

    image = decoded(r)
    assert image.size == (128, 128)
    assert "2024" in json.loads(image.info[COPY_KEY])["caption"]  # the copy was written for the headline "2024"
