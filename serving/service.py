"""The Fit-AD ad service: a thin BentoML 1.4 door over ``fitad.serve.AdServiceCore`` (request/response mapping only);
the shop owner's page at ``/``. Routes, formats and errors: README "The ad service". Settings: ``$FITAD_PARAMS``."""
import typing as t
from pathlib import Path

import bentoml
from _bentoml_impl import serde as _serde

from fitad.config import load_section
from fitad.serve.auth import KeyStore, require
from fitad.serve.config import ServeConfig
from fitad.serve.core import AdServiceCore
from fitad.serve.http import peer, respond
from fitad.serve.middleware import BodyLimitMiddleware, RouteShapeMiddleware
from fitad.serve.quota import QuotaStore
from fitad.serve.openapi import documented, publish_required
from fitad.serve.requests import (JOB_HEADER, AdRequest, CopyRequest, Txt2ImgRequest, job_id_header, route_fields,
                                  validate)
from fitad.serve.uploads import decode_upload_image, text_field_as_file
from fitad.serve.webapp import web_app

SERVE = load_section(ServeConfig)
JSON_ROUTES = ("/txt2img", "/copy", "/loras", "/quota", "/admin/reload", "/jobs/txt2img", "/jobs/progress")
FORM_ROUTES = ("/ad/product", "/ad/person", "/ad/advanced", "/ad/compose")
FILES = ("image", "product_image", "logo")
_doc = lambda model, files=(): documented(model, SERVE, files, bentoml.Context)  # noqa: E731  (OpenAPI input)
_serde.MultipartSerde.ensure_file = staticmethod(text_field_as_file)  # never fetch a URL sent as a file


def _ad_route(mode: str) -> t.Any:
    def route(self, ctx: bentoml.Context, **given: t.Any):
        return self._ad(mode, ctx, given)
    route.__name__ = f"ad_{mode}"
    return bentoml.api(route=f"/ad/{mode}")(_doc(AdRequest, FILES)(route))


@bentoml.asgi_app(web_app(SERVE), path="/")  # the shop owner's page (fitad/serve/web) at /
@bentoml.service(traffic={"timeout": 300, "max_concurrency": 64}, threads=16)
class AdService:
    def __init__(self) -> None:
        self.core = AdServiceCore.from_params(SERVE)
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

    def _who(self, ctx: bentoml.Context, tier: str = "free") -> t.Any:
        return require(self.keys.authenticate(ctx.request.headers.get("authorization"), peer(ctx.request)), tier)

    def _req(self, ctx: bentoml.Context, model: type, form: dict | None = None) -> t.Any:
        return validate(model, route_fields(ctx.request.state, form or {}, FILES), SERVE)

    def _render(self, ctx: bentoml.Context, who: t.Any, call: t.Callable, *args: t.Any) -> t.Any:
        job = job_id_header(ctx.request.headers.get(JOB_HEADER))  # a caller (the page) polls /jobs/progress with it
        return self.quota.charged(who, lambda: self.core.follow(job, who.job_owner, call, *args, who))

    def _ad(self, mode: str, ctx: bentoml.Context, given: dict) -> t.Any:
        files = {k: given.pop(k, None) for k in FILES}

        def go():
            who, req = self._who(ctx), self._req(ctx, AdRequest, given)
            images = {k: decode_upload_image(Path(v).read_bytes(), None, k, SERVE) for k, v in files.items() if v}
            return self._render(ctx, who, self.core.ad, mode, req, images)
        return respond(ctx, go)

    ad_product, ad_person, ad_advanced, ad_compose = map(_ad_route, ("product", "person", "advanced", "compose"))

    @bentoml.api(route="/txt2img")
    @_doc(Txt2ImgRequest)
    def txt2img(self, ctx: bentoml.Context, **_: t.Any):
        return respond(ctx, lambda: self._render(ctx, self._who(ctx), self.core.txt2img,
                                                 self._req(ctx, Txt2ImgRequest)))

    @bentoml.api(route="/copy")
    @_doc(CopyRequest)
    def copy(self, ctx: bentoml.Context, **_: t.Any):
        return respond(ctx, lambda: self._who(ctx) and self.core.copy(self._req(ctx, CopyRequest)))

    @bentoml.api(route="/loras")
    async def loras(self, ctx: bentoml.Context):
        return respond(ctx, lambda: self._who(ctx) and {**self.core.loras(), "status": self.core.status()})

    @bentoml.api(route="/quota")
    async def quota_left(self, ctx: bentoml.Context):
        return respond(ctx, lambda: self.quota.status(self._who(ctx)))

    @bentoml.api(route="/admin/reload")
    def admin_reload(self, ctx: bentoml.Context):
        return respond(ctx, lambda: self._who(ctx, "admin") and self.core.reload())

    @bentoml.task(route="/jobs/txt2img")
    @_doc(Txt2ImgRequest)
    def txt2img_job(self, ctx: bentoml.Context, **fields: t.Any):
        def go():  # a task's request may come back without the parsed JSON: its fields then come from BentoML
            who, req = self._who(ctx), self._req(ctx, Txt2ImgRequest, fields)
            job = self.core.jobs.create(job_id=getattr(ctx.request.state, "task_id", None), owner=who.job_owner)
            return self.quota.charged(who, lambda: self.core.run_job(job, self.core.txt2img, req, who))
        return respond(ctx, go)

    @bentoml.api(route="/jobs/progress")
    async def job_progress(self, ctx: bentoml.Context, task_id: t.Any = None):
        return respond(ctx, lambda: self.core.jobs.get(str(ctx.request.state.json.get("task_id")),
                                                   owner=self._who(ctx).job_owner))


AdService.add_asgi_middleware(BodyLimitMiddleware, max_body_bytes=SERVE.max_body_bytes)
AdService.add_asgi_middleware(RouteShapeMiddleware, json_routes=JSON_ROUTES, form_routes=FORM_ROUTES,
                              get_ok=("/loras", "/quota"), file_fields=FILES)
publish_required(AdService.apis.values())
