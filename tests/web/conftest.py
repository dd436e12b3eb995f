"""The shop owner's page in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against the real
ad service on tiny models. Without the browser or Playwright every test here skips and says why; ``make test``
installs Debian's chromium when it runs as root with apt.

Screenshots of each state go to ``$FITAD_WEB_SHOTS`` when set, else to the session's temp folder (printed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("bentoml")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

from tests.serving.conftest import KEYS, Server, build_world  # noqa: E402


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FITAD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium when run as root with apt; "
                    "or set FITAD_CHROMIUM)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def web_service(tmp_path_factory, tiny_models_root):
    """A service of its own (its own free-tier quota), API keys on. As in the embedded defaults, ads take their
    step count from ``generate.steps`` (``ads.steps`` unset); 8 steps give the progress bar something to show."""
    world = build_world(tmp_path_factory.mktemp("web"), tiny_models_root, serve={"max_queue": 4},
                        generate={"steps": 8}, ads={"steps": None})
    server = Server(world.env, world.root / "serve.log").wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FITAD_WEB_SHOTS") or tmp_path_factory.mktemp("web-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb page screenshots: {folder}")
    return folder


class PageProblems(list):
    """JavaScript errors, failed console messages (CSP violations included) seen by a page."""


@pytest.fixture
def page_at(browser, web_service):
    """``page_at(width, height, key=None)``: a fresh browser context at that viewport on the page, with the key
    saved (as a user would type it); the test fails if the page logged an error or violated its CSP."""
    opened = []

    def open_page(width: int = 390, height: int = 844, key: str | None = None, lang: str = "ko"):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="ko-KR",
                                      device_scale_factor=1)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_service.url)
        page = context.new_page()
        problems = PageProblems()
        page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
        page.goto(web_service.url + "/")
        page.wait_for_function("() => document.body.dataset.state !== undefined && "
                               "document.querySelectorAll('input[name=format]').length > 0")
        if lang != "ko":
            page.click("#lang-toggle")
        if key:
            page.fill("#api-key", KEYS[key])
            page.click("#save-key")
        opened.append((context, problems))
        return page, problems

    yield open_page
    for context, problems in opened:
        context.close()
    expected = [p for _, problems in opened for p in problems  # a refused request is logged by the browser
                if "Failed to load resource: the server responded with a status of" not in p]  # itself
    assert not expected, expected
