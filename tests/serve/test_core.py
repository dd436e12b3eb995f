"""AdServiceCore on real parts: tiny-sd15 rendering, a real SQLite MLflow registry with registered LoRA versions.

One warm Renderer is shared by the cores of this module (each core is cheap; loading the base is not). The
alias-move tests use their own registered model so the other tests see a fixed ``approved`` version.
"""

from __future__ import annotations

import io
import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mlflow")

from fitad import zoo  # noqa: E402
from fitad.serve.auth import Principal  # noqa: E402
from fitad.serve.config import ServeConfig  # noqa: E402
from fitad.serve.core import AdServiceCore, api_error_from  # noqa: E402
from fitad.serve.errors import ApiError  # noqa: E402
from fitad.serve.jobs import JobBoard  # noqa: E402
from fitad.serve.requests import AdRequest, CopyRequest, Txt2ImgRequest, validate  # noqa: E402

SERVED = "fitad-core"       # v1 approved, v2 candidate; never moved
MOVING = "fitad-move"       # v1, v2: the alias tests move `approved` between them
FLUX = "fitad-fluxlora"     # a tiny-flux LoRA
FREE, PRO = Principal("anon", "free", anonymous=True), Principal("shop", "pro")
DEADLINE_S = 30.0


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models_root):
    """A SQLite MLflow store with three registered models, and FITAD_HOME whose zoo names are the session's."""
    from tests.registry_world import registered_store

    store = registered_store(tmp_path_factory.mktemp("serve-core"), tiny_models_root,
                             [(SERVED, "sd15", 1), (SERVED, "sd15", 2), (MOVING, "sd15", 3), (MOVING, "sd15", 4),
                              (FLUX, "flux", 5)], approve=(SERVED, MOVING, FLUX))
    uri, home = store.uri, store.home
    return SimpleNamespace(uri=uri, home=home, base=str(zoo.ensure_tiny("tiny-sd15", tiny_models_root)))


@pytest.fixture(autouse=True)
def _env(world, monkeypatch):
    """Adapter downloads shared by the module's tests; nothing reaches the project's own store."""
    monkeypatch.setenv("FITAD_HOME", str(world.home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world.uri)


@pytest.fixture(scope="module")
def renderer(world):
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    return Renderer(RenderConfig(base_model=world.base, inpaint_model=None, steps=2))


@pytest.fixture
def make_core(world, renderer):
    """``make_core(**serve_overrides)``: a core over the shared renderer, stopped after the test."""
    from fitad.ads.config import AdConfig

    made: list[AdServiceCore] = []

    def make(start: bool = True, ads_steps: int | None = 2, **overrides) -> AdServiceCore:
        kwargs = dict(model_name=SERVED, poll_s=3600.0, max_queue=1, retry_after_s=7, free_max_side=96)
        kwargs.update(overrides)
        core = AdServiceCore(ServeConfig(**kwargs), renderer.config, AdConfig(steps=ads_steps),
                             tracking_uri=world.uri, renderer=renderer)
        made.append(core)
        if start:
            core.start()
        return core

    yield make
    for core in made:
        core.stop()


def txt(**fields) -> Txt2ImgRequest:
    return validate(Txt2ImgRequest, {"prompt": "a cup of coffee", "format": "128x128", "seed": 3, "steps": 2,
                                     **fields})


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Blocker:
    """A progress callback that holds the render at its first step until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, event) -> None:
        self.entered.set()
        assert self.release.wait(DEADLINE_S), "the test never released the blocked render"


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# ---------------------------------------------------------------- readiness and rendering

def test_ready_only_after_start_and_txt2img_is_a_png_of_the_format(make_core):
    core = make_core(start=False)
    assert core.live() and not core.ready()
    assert "not loaded" in core.status()["reason"]
    with pytest.raises(ApiError) as err:
        core.txt2img(txt(), PRO)
    assert err.value.status == 503 and err.value.code == "not_ready"
    core.start()
    assert core.ready() and core.status()["served"]["version"] == "1"

    result = core.txt2img(txt(format="kakao_banner", headline="오늘의 커피", seed=None), PRO)
    img = decode(result.png)
    assert (img.format, img.size) == ("PNG", (800, 400))
    meta = result.metadata
    assert json.loads(img.text["fitad:ad"])["seed"] == meta["seed"]
    assert isinstance(meta["seed"], int) and meta["size"] == [800, 400]
    assert meta["lora"]["ref"] == f"models:/{SERVED}/1" and meta["lora"]["version"] == "1"
    assert meta["lora"]["name"] == SERVED and meta["lora"]["alias"] == "approved"
    assert "coffee" in meta["prompt"]["used"] and isinstance(meta["prompt"]["dropped"], list)
    assert {"render", "overlay", "service_total"} <= set(meta["timings"])
    assert {"denoise", "decode"} <= set(meta["render_timings"])
    assert (meta["tier"], meta["watermarked"]) == ("pro", False)
    assert result.copy["hashtags"]
    # the same request and seed gives the same pixels
    again = core.txt2img(txt(format="kakao_banner", headline="오늘의 커피", seed=meta["seed"]), PRO)
    assert np.array_equal(again.image, result.image)


def test_no_registered_model_is_not_ready_with_a_reason(make_core):
    core = make_core(model_name="fitad-nobody")
    assert core.live() and not core.ready()
    assert "no registered model 'fitad-nobody'" in core.status()["reason"]
    with pytest.raises(ApiError) as err:
        core.txt2img(txt(), PRO)
    assert err.value.code == "not_ready" and err.value.headers["Retry-After"] == "7"
    # nothing configured: the base model alone is served
    bare = make_core(model_name=None)
    assert bare.ready() and bare.txt2img(txt(), PRO).metadata.get("lora") is None


def test_served_lora_of_the_wrong_family_a_fixed_path_and_a_dead_registry(make_core, tmp_path):
    wrong = make_core(model_name=FLUX)
    assert not wrong.ready() and "flux LoRA" in wrong.status()["reason"]
    local = zoo.build_tiny_lora(tmp_path / "local", seed=7)
    fixed = make_core(model_name=None, lora=str(local))
    assert fixed.ready() and fixed.status()["served"]["ref"] == str(local)
    assert fixed.txt2img(txt(), PRO).metadata["lora"]["path"] == str(local)
    dead = AdServiceCore(ServeConfig(model_name=SERVED), wrong.render_config, wrong.ads,
                         tracking_uri="http://127.0.0.1:9", renderer=wrong.renderer)
    dead.start()
    try:
        assert not dead.ready() and "registry unavailable" in dead.status()["reason"]
        assert dead.loras()["error"] and dead.status()["watcher"]
    finally:
        dead.stop()


def test_free_tier_gets_the_watermark_and_the_reduced_size(make_core):
    core = make_core()
    free = core.txt2img(txt(format="192x128"), FREE)
    assert decode(free.png).size == (96, 64)
    assert (free.metadata["tier"], free.metadata["watermarked"]) == ("free", True)
    assert free.metadata["watermark"]["scaled_from"] == [192, 128]
    paid = core.txt2img(txt(format="192x128"), PRO)
    assert decode(paid.png).size == (192, 128) and paid.metadata["watermarked"] is False
    assert core.txt2img(txt(format="192x128"), None).metadata["tier"] == "free"


# ---------------------------------------------------------------- the approved alias

def test_the_served_lora_follows_an_alias_move_and_admitted_requests_keep_theirs(make_core, world):
    from fitad.tracking.registry import Registry

    registry = Registry(world.uri)
    registry.approve(MOVING, "1", "start from v1", by="test")
    core = make_core(model_name=MOVING, poll_s=0.2)
    assert core.status()["served"]["version"] == "1"
    blocker = Blocker()
    thread, out = in_thread(core.txt2img, txt(), PRO, progress=blocker)
    assert blocker.entered.wait(DEADLINE_S)

    registry.approve(MOVING, "2", "newer", by="test")
    wait_for(lambda: (core.status()["served"] or {}).get("version") == "2", "the watcher to serve v2")
    blocker.release.set()
    thread.join(DEADLINE_S)
    assert "error" not in out, out.get("error")
    assert out["result"].metadata["lora"]["version"] == "1"   # admitted before the move
    after = core.txt2img(txt(), PRO)
    assert after.metadata["lora"]["ref"] == f"models:/{MOVING}/2"
    assert not np.array_equal(after.image, out["result"].image)
    assert core.status()["swaps"][-1]["to"] == f"models:/{MOVING}/2"


def test_reload_picks_up_a_move_at_once(make_core, world):
    from fitad.tracking.registry import Registry

    registry = Registry(world.uri)
    core = make_core(model_name=MOVING, poll_s=3600.0)
    current = core.status()["served"]["version"]
    other = "2" if current == "1" else "1"
    registry.approve(MOVING, other, "reload test", by="test")
    moved = core.reload()
    assert moved["before"]["version"] == current and moved["after"]["version"] == other and moved["changed"]
    assert core.reload()["changed"] is False
    assert core.txt2img(txt(), PRO).metadata["lora"]["version"] == other


def test_loras_lists_served_loaded_available_and_approved(make_core):
    core = make_core()
    core.txt2img(txt(lora=f"{SERVED}/2"), PRO)
    listing = core.loras()
    assert listing["served"]["version"] == "1" and listing["approved"] == "1"
    assert [(v["version"], v["aliases"]) for v in listing["available"]] == [("1", ["approved"]),
                                                                             ("2", ["candidate"])]
    assert listing["loaded"]["base"]["activations"]


# ---------------------------------------------------------------- per-request LoRA

def test_per_request_lora_by_name_alias_and_version(make_core):
    core = make_core()
    assert core.txt2img(txt(lora=f"{SERVED}/2"), PRO).metadata["lora"]["ref"] == f"models:/{SERVED}/2"
    by_alias = core.txt2img(txt(lora=f"{SERVED}@candidate"), PRO).metadata["lora"]
    assert (by_alias["version"], by_alias["alias"], by_alias["requested"]) == ("2", "candidate",
                                                                             f"{SERVED}@candidate")
    assert core.txt2img(txt(lora=SERVED), PRO).metadata["lora"]["version"] == "1"
    assert core.txt2img(txt(lora=f"{MOVING}/1"), PRO).metadata["lora"]["name"] == MOVING


@pytest.mark.parametrize("lora, status, code, words", [
    (FLUX, 422, "wrong_family", "flux LoRA.*sd15"),
    ("fitad-nobody", 404, "not_found", "no registered model 'fitad-nobody'"),
    (f"{SERVED}/9", 404, "not_found", "has no version 9"),
    (f"{SERVED}@gone", 404, "not_found", "carries the alias 'gone'"),
    ("../../etc/passwd", 422, "invalid_field", "not a registered model reference"),
    ("models:/x/1", 422, "invalid_field", "not a registered model reference"),
])
def test_refused_per_request_loras(make_core, lora, status, code, words):
    core = make_core()
    req = Txt2ImgRequest.model_construct(**{**dict(txt()), "lora": lora})  # past the request model's own check
    with pytest.raises(ApiError) as err:
        core.txt2img(req, PRO)
    assert (err.value.status, err.value.code, err.value.field) == (status, code, "lora")
    assert __import__("re").search(words, err.value.message), err.value.message
    assert core.gate.stats()["inside"] == 0


# ---------------------------------------------------------------- admission

def test_busy_beyond_one_running_and_max_queue_waiting(make_core):
    core = make_core(max_queue=1)
    blocker = Blocker()
    running, out_a = in_thread(core.txt2img, txt(), PRO, progress=blocker)
    assert blocker.entered.wait(DEADLINE_S)
    waiting, out_b = in_thread(core.txt2img, txt(seed=4), PRO)
    wait_for(lambda: core.gate.stats()["inside"] == 2, "the second request to queue")
    with pytest.raises(ApiError) as err:
        core.txt2img(txt(seed=5), PRO)
    assert (err.value.status, err.value.code, err.value.headers) == (429, "busy", {"Retry-After": "7"})
    assert core.status()["queue"] == {"inside": 2, "running": 1, "waiting": 1, "capacity": 2, "refused": 1}
    compose = core.ad("compose", validate(AdRequest, {"format": "128x128"}), {"image": photo()}, PRO)
    assert compose.metadata["mode"] == "compose"    # overlay only: not queued behind the renderer
    blocker.release.set()
    for thread in (running, waiting):
        thread.join(DEADLINE_S)
    assert "result" in out_a and "result" in out_b
    assert core.gate.stats()["inside"] == 0
    assert core.txt2img(txt(), PRO).metadata["size"] == [128, 128]


# ---------------------------------------------------------------- ad modes, errors, copy

def photo(size: int = 96) -> np.ndarray:
    """A red box on a light grey table: a product the OpenCV segmenter finds."""
    img = np.full((size, size, 3), 225, np.uint8)
    img[size // 4: 3 * size // 4, size // 3: 2 * size // 3] = (200, 30, 40)
    return img


def test_product_mode_keeps_the_product_and_compose_renders_nothing(make_core):
    core = make_core()
    req = validate(AdRequest, {"format": "128x128", "prompt": "on a marble counter", "seed": 1})
    product = core.ad("product", req, {"image": photo()}, PRO)
    assert decode(product.png).size == (128, 128)
    assert product.metadata["kept"]["product"]["kept_pixels"] > 0
    assert product.metadata["lora"]["version"] == "1"
    compose = core.ad("compose", validate(AdRequest, {"format": "128x128", "headline": "SALE"}),
                      {"image": photo()}, FREE)
    assert "render_timings" not in compose.metadata and compose.metadata["watermarked"]


@pytest.mark.parametrize("mode, images, field", [
    ("product", {}, "image"),                                   # AdError: no photo
    ("person", {"image": photo()}, "image"),                    # SubjectError: no face
    ("advanced", {"image": photo()}, "product_image"),          # AdError: no product photo
    ("compose", {"image": np.zeros((8, 8, 3), np.uint8)}, "image"),   # ImageLoadError: too small
])
def test_library_errors_are_api_errors_naming_the_field(make_core, mode, images, field):
    core = make_core()
    with pytest.raises(ApiError) as err:
        core.ad(mode, validate(AdRequest, {"format": "128x128"}), images, PRO)
    assert err.value.status in (400, 422) and err.value.field == field, err.value
    with pytest.raises(ApiError) as err:
        core.ad("collage", validate(AdRequest, {}), {}, PRO)
    assert err.value.status == 404


def test_api_error_from_maps_library_errors():
    from fitad.ads.formats import FormatError
    from fitad.generate.renderer import RenderError
    from fitad.lora.load import LoraLoadError

    assert api_error_from(RenderError("seed = -1: must be an integer")).field == "seed"
    assert api_error_from(FormatError("unknown format 'x'")).field == "format"
    assert api_error_from(LoraLoadError("/tmp/x: not a LoRA")).field == "lora"
    server = api_error_from(RenderError("generate.inpaint_model: no such model"))
    assert (server.status, server.code) == (503, "not_ready")


def test_copy_returns_caption_and_hashtags(make_core):
    core = make_core(start=False)   # copy needs no model
    copy = core.copy(validate(CopyRequest, {"industry": "cafe", "lang": "en", "shop_name": "Blue Bean",
                                            "headline": "New latte", "offer": "20% off"}))
    assert copy["hashtags"][0] == "#BlueBean" and len(copy["hashtags"]) > 3
    assert "New latte" in copy["caption"] and copy["industry"] == "cafe"


# ---------------------------------------------------------------- jobs

def test_a_job_reports_progress_up_to_total(make_core):
    core = make_core()
    job = core.jobs.create()
    assert core.jobs.get(job)["state"] == "queued"
    seen: list[tuple[str, int, int]] = []
    callback = core.progress_callback(job)

    def watch(event) -> None:
        callback(event)
        state = core.jobs.get(job)
        seen.append((state["state"], state["step"], state["total"]))

    result = core.txt2img(txt(steps=2), PRO, progress=watch)
    core.jobs.finish(job, result.metadata)
    assert seen == [("running", 0, 2), ("running", 1, 2), ("running", 2, 2)]  # running from admission
    done = core.jobs.get(job)
    assert (done["state"], done["step"], done["total"], done["stage"]) == ("done", 2, 2, "txt2img")
    assert done["result"]["seed"] == 3 and done["elapsed_s"] >= 0

    failed = core.jobs.create()
    with pytest.raises(ApiError):
        core.run_job(failed, core.txt2img, txt(lora="fitad-nobody"), PRO)
    assert core.jobs.get(failed)["state"] == "failed"
    assert core.jobs.get(failed)["error"]["code"] == "not_found"
    ok = core.jobs.create()
    core.run_job(ok, core.txt2img, txt(), PRO)
    assert core.jobs.get(ok)["step"] == core.jobs.get(ok)["total"] == 2


def test_job_board_ttl_bound_and_unknown_ids():
    now = [0.0]
    board = JobBoard(ttl_s=10, max_jobs=3, clock=lambda: now[0])
    a, b, c = board.create(), board.create(), board.create()
    board.progress(a, "txt2img", 1, 4)
    board.fail(b, ApiError(422, "invalid_field", "x", "prompt"))
    assert board.get(a)["state"] == "running" and board.get(b)["error"]["field"] == "prompt"
    d = board.create()                     # full: the oldest ended job (b) makes room
    with pytest.raises(ApiError) as err:
        board.get(b)
    assert (err.value.status, err.value.code, err.value.field) == (404, "not_found", "job_id")
    board.finish(a, {"seed": 1})
    assert board.get(a)["step"] == 4
    now[0] = 11.0
    assert board.get(c)["state"] == "queued" and board.get(d)["elapsed_s"] == 11.0
    with pytest.raises(ApiError):
        board.get(a)                       # ended more than ttl_s ago
    now[0] = 25.0
    assert board.cleanup() == 2 and len(board) == 0
    with pytest.raises(ApiError):
        board.get("../../etc")


def test_a_job_id_in_use_is_refused_and_an_owners_job_is_hidden_from_others():
    board = JobBoard()
    mine = board.create("a" * 32, owner="key:alice")
    with pytest.raises(ApiError) as err:   # still running: nobody can take the id over
        board.create(mine, owner="key:mallory")
    assert err.value.status == 409
    assert board.get(mine, owner="key:alice")["state"] == "queued"
    for other in ("key:mallory", None):
        with pytest.raises(ApiError) as err:
            board.get(mine, owner=other)
        assert err.value.status == 404
    board.finish(mine, {"seed": 1})
    assert board.create(mine, owner="key:alice") == mine   # ended: the id may be used again
    assert board.get(mine, owner="key:alice")["state"] == "queued"
    open_job = board.create()                               # no owner (auth off): anyone who has the id
    assert board.get(open_job, owner="key:bob")["state"] == "queued"


def test_a_render_runs_from_admission_with_the_default_step_count(make_core):
    """ads.steps unset and no steps in the request (the embedded defaults): the first progress report comes at
    admission with generate.steps as the total; a followed render ends done under the caller's id."""
    core = make_core(ads_steps=None)
    seen = []
    core.txt2img(txt(steps=None), PRO, progress=lambda e: seen.append((e.stage, e.step, e.total)))
    assert seen[0] == ("prepare", 0, core.render_config.steps) and seen[-1][1] == seen[-1][2]
    job = "b" * 32
    core.follow(job, "key:pro", core.txt2img, txt(steps=None), PRO)
    assert core.jobs.get(job, owner="key:pro")["state"] == "done"
