"""The Fit-AD ad service: a thin BentoML 1.4 door over ``fitad.serve.AdServiceCore`` (mapping only, no logic).

JSON routes (``/txt2img``, ``/copy``, ``/loras``, ``/quota``, ``/admin/reload``, ``/jobs/...``) take a JSON object;
ad routes take ``multipart/form-data`` (``image`` [+ ``product_image``, ``logo``] files, fields as form values or
one ``request`` JSON field). Images come back as PNG with the metadata JSON in ``X-Fitad-Meta``; every refusal is
``{"error": {"code", "message", "field", "request_id"}}`` with its status. Settings: params.yaml (``$FITAD_PARAMS``).
"""
from __future__ import annotations

import typing as t
from pathlib import Path

import bentoml
from _bentoml_impl import serde as _serde
from starlette.datastructures import UploadFile
from starlette.responses import Response

from fitad.ads.config import AdConfig
from fitad.config import load_section
from fitad.generate.config import RenderConfig
from fitad.serve.auth import KeyStore, require
from fitad.serve.config import ServeConfig
from fitad.serve.core import AdServiceCore
from fitad.serve.errors import ApiError
from fitad.serve.middleware import BodyLimitMiddleware, RouteShapeMiddleware
from fitad.serve.quota import QuotaStore
from fitad.serve.http import reply_parts
from fitad.serve.requests import AdRequest, CopyRequest, Txt2ImgRequest, request_fields, validate
from fitad.serve.uploads import decode_upload_image

SERVE = load_section(ServeConfig)
JSON_ROUTES = ("/txt2img", "/copy", "/loras", "/quota", "/admin/reload", "/jobs/txt2img", "/jobs/progress")
FORM_ROUTES = ("/ad/product", "/ad/person", "/ad/advanced", "/ad/compose")
GET_OK = ("/loras", "/quota")


async def _text_is_not_a_url(obj: t.Any) -> UploadFile:  # never fetch a URL sent in a file field (SSRF)
    import io
    return obj if isinstance(obj, UploadFile) else UploadFile(io.BytesIO(str(obj).encode("utf-8", "replace")))


_serde.MultipartSerde.ensure_file = staticmethod(_text_is_not_a_url)


def _reply(ctx: bentoml.Context, call: t.Callable[[], t.Any]) -> Response:
    status, headers, body, media = reply_parts(call)
    ctx.response.status_code = status  # BentoML overrides a returned Response's status with this one
    return Response(body, status_code=status, media_type=media, headers=headers)


def _ad_route(mode: str) -> t.Any:
    """One multipart ad route; BentoML reads each route's input schema from its signature, so it is built here."""
    def route(self, ctx: bentoml.Context, image: Path = None, product_image: Path = None, logo: Path = None,
              request: t.Any = None, prompt: t.Any = None, format: t.Any = None, headline: t.Any = None,
              seed: t.Any = None, steps: t.Any = None, lora: t.Any = None):
        return self._ad(mode, ctx, dict(locals()))
    route.__name__ = f"ad_{mode}"
    return bentoml.api(route=f"/ad/{mode}")(route)


@bentoml.service(traffic={"timeout": 300, "max_concurrency": 64}, threads=16)
class AdService:
    def __init__(self) -> None:
        self.core = AdServiceCore(SERVE, load_section(RenderConfig), load_section(AdConfig))
        self.keys = KeyStore.from_config(SERVE)
        self.quota = QuotaStore(SERVE.quota_path(), SERVE.free_daily_images, SERVE.timezone_offset_hours)
        self.core.start_background(preload=("txt2img", "inpaint"))  # never raises: /readyz says 503 until ready

    def __is_ready__(self) -> bool:
        return self.core.ready()

    def __is_alive__(self) -> bool:
        return self.core.live()

    @bentoml.on_shutdown
    def _stop(self) -> None:
        self.core.stop()

    # ---- mapping helpers
    def _who(self, ctx: bentoml.Context, tier: str = "free") -> t.Any:
        client = ctx.request.client.host if ctx.request.client else "unknown"
        return require(self.keys.authenticate(ctx.request.headers.get("authorization"), client), tier)

    @staticmethod
    def _body(ctx: bentoml.Context, form: dict) -> dict:
        return request_fields(getattr(ctx.request.state, "json", None), form)

    # ---- routes
    @bentoml.api(route="/txt2img")
    def txt2img(self, ctx: bentoml.Context, prompt: t.Any = None, format: t.Any = None, seed: t.Any = None,
                steps: t.Any = None, guidance: t.Any = None, lora: t.Any = None, lora_scale: t.Any = None):
        def go():
            who, req = self._who(ctx), validate(Txt2ImgRequest, self._body(ctx, {}), SERVE)
            return self.quota.charged(who, lambda: self.core.txt2img(req, who))
        return _reply(ctx, go)

    def _ad(self, mode: str, ctx: bentoml.Context, given: dict) -> Response:
        files = {k: given.pop(k) for k in ("image", "product_image", "logo")}
        for name in ("self", "ctx", "mode"):  # the route's own names, not request fields
            given.pop(name, None)

        def go():
            who, req = self._who(ctx), validate(AdRequest, self._body(ctx, given), SERVE)
            images = {k: decode_upload_image(Path(v).read_bytes(), None, k, SERVE) for k, v in files.items() if v}
            return self.quota.charged(who, lambda: self.core.ad(mode, req, images, who))
        return _reply(ctx, go)

    # multipart: files, then the other fields one by one or all in `request` (a JSON object)
    ad_product, ad_person, ad_advanced, ad_compose = (_ad_route(m) for m in ("product", "person", "advanced",
                                                                              "compose"))

    @bentoml.api(route="/copy")
    def copy(self, ctx: bentoml.Context, industry: t.Any = None, lang: t.Any = None, shop_name: t.Any = None):
        return _reply(ctx, lambda: self._who(ctx) and self.core.copy(validate(CopyRequest, self._body(ctx, {}),
                                                                              SERVE)))

    @bentoml.api(route="/loras")
    async def loras(self, ctx: bentoml.Context):
        return _reply(ctx, lambda: self._who(ctx) and {**self.core.loras(), "status": self.core.status()})

    @bentoml.api(route="/quota")
    async def quota_left(self, ctx: bentoml.Context):
        return _reply(ctx, lambda: self.quota.status(self._who(ctx)))

    @bentoml.api(route="/admin/reload")
    def admin_reload(self, ctx: bentoml.Context):
        return _reply(ctx, lambda: self._who(ctx, "admin") and self.core.reload())

    @bentoml.task(route="/jobs/txt2img")
    def txt2img_job(self, ctx: bentoml.Context, prompt: t.Any = None, format: t.Any = None, seed: t.Any = None,
                    steps: t.Any = None, guidance: t.Any = None, lora: t.Any = None, lora_scale: t.Any = None):
        fields = {k: v for k, v in locals().items() if k not in ("self", "ctx")}

        def go():
            who, req = self._who(ctx), validate(Txt2ImgRequest, self._body(ctx, fields), SERVE)
            job = self.core.jobs.create(job_id=getattr(ctx.request.state, "task_id", None))
            return self.quota.charged(who, lambda: self.core.run_job(job, self.core.txt2img, req, who))
        return _reply(ctx, go)

    @bentoml.api(route="/jobs/progress")
    async def job_progress(self, ctx: bentoml.Context, task_id: t.Any = None):
        return _reply(ctx, lambda: self._who(ctx) and self.core.jobs.get(str(ctx.request.state.json.get(
            "task_id", ""))))


AdService.add_asgi_middleware(BodyLimitMiddleware, max_body_bytes=SERVE.max_body_bytes)
AdService.add_asgi_middleware(RouteShapeMiddleware, json_routes=JSON_ROUTES, form_routes=FORM_ROUTES,
                              get_ok=GET_OK)
