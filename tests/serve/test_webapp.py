"""The page's Starlette app: the page and its assets, the options the page starts from, the security headers."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from fitad.serve.config import ServeConfig  # noqa: E402
from fitad.serve.errors import ApiError  # noqa: E402
from fitad.serve.requests import Txt2ImgRequest, validate  # noqa: E402
from fitad.serve.webapp import WEB_DIR, page_options, web_app  # noqa: E402


@pytest.fixture(scope="module")
def client():
    return TestClient(web_app(ServeConfig(max_body_bytes=5_000_000, free_daily_images=5, free_max_side=512)))


def test_the_page_and_its_assets_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    for asset in ("app.js", "app.css"):
        assert f"/web/{asset}" in page.text
        assert client.get(f"/web/{asset}").status_code == 200
    font = client.get("/web/fonts/FitadGothic-Bold.ttf")  # the bundled Korean font, for machines without one
    assert font.status_code == 200 and font.content[:4] in (b"\x00\x01\x00\x00", b"OTTO", b"true")
    for sneaky in ("/web/%2e%2e/webapp.py", "/web/..%2fwebapp.py", "/web/fonts/%2e%2e/%2e%2e/serve/webapp.py",
                   "/web/%2e%2e/%2e%2e/%2e%2e/pyproject.toml"):
        assert client.get(sneaky).status_code == 404, sneaky
    assert client.get("/web/missing.js").status_code == 404
    # every response carries the policy, the page under its file name too (it cannot be framed from elsewhere)
    for path in ("/web/index.html", "/web/app.js", "/web/options.json"):
        assert "frame-ancestors 'none'" in client.get(path).headers["content-security-policy"], path


def test_the_page_loads_nothing_from_outside(client):
    for name in ("index.html", "app.js", "app.css"):
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text.replace("https://www.w3.org", ""), name


def test_options_follow_the_deployment(client):
    opts = client.get("/web/options.json").json()
    assert opts["free_tier"] == {"daily_images": 5, "max_side": 512}
    assert 0 < opts["limits"]["max_upload_bytes"] < 5_000_000
    assert [f["key"] for f in opts["formats"]][:3] == ["instagram_square", "instagram_portrait", "instagram_story"]
    assert {"ko", "en", "id"} <= set(opts["industries"][0])


def test_every_choice_the_page_offers_is_one_the_api_accepts():
    opts = page_options(ServeConfig())
    for fmt in opts["formats"]:
        validate(Txt2ImgRequest, {"prompt": "x", "format": fmt["key"]})
        assert fmt["width"] >= 64 and fmt["height"] >= 64
    for industry in opts["industries"]:
        assert validate(Txt2ImgRequest, {"prompt": "x", "industry": industry["ko"]}).industry == industry["id"]
    with pytest.raises(ApiError):  # the check is real: a format the page does not offer is refused
        validate(Txt2ImgRequest, {"prompt": "x", "format": "poster"})
