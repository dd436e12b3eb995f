"""The shop owner's page: static HTML/CSS/JS shipped in the package (``fitad/serve/web/``), served by the ad service.

:func:`web_app` is a small Starlette app the service mounts at ``/``: ``GET /`` gives ``index.html``, ``/web/*``
the assets, and ``GET /web/options.json`` what the page needs to draw its choices and check a photo before upload
(ad formats with their sizes, industries with Korean and English names, upload limits, the free tier's terms), all
read from the library and this deployment's :class:`~fitad.serve.config.ServeConfig`, so the page never lists
something the service would refuse. No CDN, no build step: every byte the page loads comes from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FONT_DIR", "PAGE_FORMATS", "WEB_DIR", "page_options", "web_app"]

WEB_DIR = Path(__file__).with_name("web")
# The project's bundled Korean font (OFL), so Hangul shows on machines without a Korean system font.
FONT_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts"
# The formats the page offers, in its order (1:1, 4:5, 9:16, Facebook, Kakao); the API takes every format.
PAGE_FORMATS = ("instagram_square", "instagram_portrait", "instagram_story", "facebook_link", "kakao_square")
# The page loads only its own files; the images it shows (previews, the service's answers) are blob: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_options(config: Any) -> dict[str, Any]:
    """The JSON the page starts from (``/web/options.json``)."""
    from fitad.ads.formats import get_format
    from fitad.generate.industries import INDUSTRIES

    formats = [get_format(name) for name in PAGE_FORMATS]
    return {
        "formats": [{"key": f.key, "label": f.label, "width": f.width, "height": f.height} for f in formats],
        "industries": [{"id": i.id, "ko": i.name_ko, "en": i.name_en} for i in INDUSTRIES.values()],
        "limits": {"max_upload_bytes": _photo_budget(int(config.max_body_bytes)),
                   "max_pixels": int(config.max_pixels), "min_side": int(config.min_image_side),
                   "max_prompt_chars": int(config.max_prompt_chars), "max_text_chars": int(config.max_text_chars)},
        "free_tier": {"daily_images": int(config.free_daily_images), "max_side": int(config.free_max_side)},
    }


def _photo_budget(max_body_bytes: int) -> int:
    """What the photos of one request may weigh: the body limit less room for the other form parts (64 KiB, or
    an eighth of a small limit)."""
    return max_body_bytes - min(64 * 1024, max_body_bytes // 8)


def web_app(config: Any) -> Any:
    """The Starlette app serving the page and its assets for ``config`` (a ServeConfig)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    options = page_options(config)
    if not (WEB_DIR / "index.html").is_file():
        raise FileNotFoundError(f"the page is missing from the installed package: {WEB_DIR / 'index.html'}")

    async def index(request: Any) -> Any:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def options_json(request: Any) -> Any:
        return JSONResponse(options, headers={"Cache-Control": "no-cache"})

    return Starlette(routes=[
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/web/options.json", options_json, methods=["GET"]),
        Mount("/web/fonts", StaticFiles(directory=FONT_DIR), name="fonts"),
        Mount("/web", StaticFiles(directory=WEB_DIR), name="web"),
    ], middleware=[Middleware(HeadersMiddleware, headers=SECURITY_HEADERS)])  # a Starlette app: BentoML's mount
    # at / then takes only the paths these routes match


class HeadersMiddleware:
    """Adds ``headers`` to every HTTP response (the page is also reachable as /web/index.html)."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.raw]}
            await send(message)
        await self.app(scope, receive, send_with_headers)
