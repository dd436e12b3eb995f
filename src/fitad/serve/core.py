"""The ad service without HTTP: one warm renderer, the approved LoRA kept current, admission, tiers, jobs.

``AdServiceCore`` is what ``serving/service.py`` calls after parsing a request; everything here is plain
Python (no bentoml), so it is tested in-process with the tiny models and a real SQLite MLflow registry.

* **Served LoRA**: with ``serve.model_name`` the default adapter is the version carrying ``serve.alias``
  (``models:/NAME@approved``). A watcher thread polls the alias every ``serve.poll_s``; a new version is
  downloaded and checked first, then the default reference is swapped in one assignment. A request captures
  the default when it is admitted, so requests already in the queue finish with the version they started
  with. Without a model name, ``serve.lora`` (a path or URI) or the base model alone is served.
* **Admission**: one generation runs at a time (the renderer's lock); at most ``serve.max_queue`` more wait.
  Beyond that a request is refused at once with 429 ``busy`` and ``Retry-After``.
* **Tiers**: ``free`` gets the watermark and an output no longer than ``serve.free_max_side``; ``pro`` and
  ``admin`` neither.
* Errors of the ad library become :class:`~fitad.serve.errors.ApiError` naming the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import re
import threading
import time
from typing import Any, Callable, Mapping

import numpy as np

from fitad.serve.errors import ApiError
from fitad.serve.jobs import AdmissionGate, JobBoard
from fitad.serve.watcher import AliasWatcher, LoraRef, LoraResolver, parse_lora_spec

log = logging.getLogger("fitad.serve")

__all__ = ["AD_MODES", "AdServiceCore", "AdmissionGate", "JobBoard", "ServeResult", "api_error_from"]

AD_MODES = ("product", "person", "advanced", "compose")
PAID_TIERS = ("pro", "admin")
_REQUEST_FIELDS = {"prompt", "negative_prompt", "format", "industry", "lang", "headline", "subcopy", "shop_name",
                   "offer", "brand_colors", "steps", "guidance", "seed", "lora", "lora_scale", "image",
                   "product_image", "logo", "mode"}
_SERVER_PREFIXES = ("generate.", "ads.face_model", "ads.rembg_model", "ads.rewriter")


@dataclasses.dataclass
class ServeResult:
    """An ad: PNG bytes (metadata in text chunks), the metadata, and the pixels for other encodings."""

    png: bytes
    metadata: dict[str, Any]
    image: np.ndarray | None = None
    copy: dict[str, Any] | None = None


def api_error_from(exc: BaseException) -> ApiError:
    """A library error (AdError, RenderError, LoraLoadError, FormatError, ImageLoadError, ...) as an ApiError.

    The field is read from the message (``image: ...``, ``ads.format: ...``, ``seed = ...``) or from the error
    class; a server-side setting (``generate.*``) is a 503, a bad upload a 400, anything else a 422.
    """
    from fitad.ads.formats import FormatError
    from fitad.generate.industries import PromptError
    from fitad.images import ImageLoadError
    from fitad.lora.load import LoraLoadError

    if isinstance(exc, ApiError):
        return exc
    message = str(exc) or type(exc).__name__
    if message.startswith(_SERVER_PREFIXES):
        return ApiError(503, "not_ready", f"the service cannot do this as configured: {message}",
                        headers={"Retry-After": "60"})
    match = re.match(r"^(?:ads\.)?([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])?\s*[:=]", message)
    field = match.group(1) if match and match.group(1) in _REQUEST_FIELDS else None
    if field is None:
        field = next((name for cls, name in ((LoraLoadError, "lora"), (FormatError, "format"),
                                             (ImageLoadError, "image"), (PromptError, "prompt"))
                      if isinstance(exc, cls)), None)
    if isinstance(exc, ImageLoadError):
        return ApiError(400, "invalid_image", message, field)
    return ApiError(422, "invalid_field", message, field)


def _library_errors() -> tuple[type[BaseException], ...]:
    from fitad.ads.formats import FormatError
    from fitad.ads.make import AdError
    from fitad.ads.overlay import OverlayError
    from fitad.ads.subjects import SubjectError
    from fitad.config import ConfigError
    from fitad.generate.industries import PromptError
    from fitad.generate.renderer import RenderError
    from fitad.images import ImageLoadError
    from fitad.lora.load import LoraLoadError

    return (AdError, RenderError, LoraLoadError, FormatError, ImageLoadError, SubjectError, PromptError,
            OverlayError, ConfigError)


def _png_bytes(image: np.ndarray, metadata: dict[str, Any], copy: dict[str, Any]) -> bytes:
    """The ad as PNG with the same text chunks :func:`fitad.ads.result.write_ad` writes."""
    from PIL import Image, PngImagePlugin

    from fitad.ads.result import COPY_KEY, PNG_KEY, a1111_parameters

    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, json.dumps(metadata, ensure_ascii=False, default=str))
    info.add_itxt(COPY_KEY, json.dumps(copy, ensure_ascii=False))
    info.add_text("parameters", a1111_parameters(metadata))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info, compress_level=3)
    return buffer.getvalue()


def _image_input(value: Any) -> Any:
    """An upload as make_ad takes it: arrays and bytes as they are, a LoadedImage as RGB(A) pixels."""
    if value is None or isinstance(value, (np.ndarray, bytes)):
        return value
    rgb, alpha = getattr(value, "rgb", None), getattr(value, "alpha", None)
    if isinstance(rgb, np.ndarray):
        return np.dstack([rgb, alpha]) if alpha is not None else rgb
    return value


class AdServiceCore:
    """One warm renderer and the served LoRA behind txt2img / ad / copy, with admission, tiers and jobs."""

    def __init__(self, serve: Any, render: Any, ads: Any, *, tracking_uri: str | None = None,
                 renderer: Any = None) -> None:
        from fitad.generate.renderer import Renderer
        from fitad.tracking.store import default_tracking_uri, normalize_uri

        self.serve, self.render_config, self.ads = serve, render, ads
        self.tracking_uri = normalize_uri(tracking_uri) if tracking_uri else default_tracking_uri()
        self.renderer = renderer if renderer is not None else Renderer(render)
        self.resolver = LoraResolver(self.tracking_uri)
        self.gate = AdmissionGate(serve.max_queue, serve.retry_after_s)
        self.jobs = JobBoard()
        self._refresh_lock = threading.Lock()
        self._served: LoraRef | None = None
        self._resolved = False             # the default LoRA is known (or none is configured)
        self._base_family: str | None = None
        self._stopped = False
        self._reason = "starting: the base model is not loaded yet"
        self._check: dict[str, Any] = {"at": None, "error": None}
        self._swaps: list[dict[str, Any]] = []
        self._watcher: AliasWatcher | None = None
        self.start_seconds: dict[str, float] = {}

    @classmethod
    def from_params(cls, serve: Any, **kwargs: Any) -> "AdServiceCore":
        """With the ``generate`` and ``ads`` sections of params.yaml (``$FITAD_PARAMS``) beside ``serve``."""
        from fitad.ads.config import AdConfig
        from fitad.config import load_section
        from fitad.generate.config import RenderConfig

        return cls(serve, load_section(RenderConfig), load_section(AdConfig), **kwargs)

    # ------------------------------------------------------------ lifecycle
    def start_background(self, preload: tuple[str, ...] = ("txt2img",)) -> threading.Thread:
        """:meth:`start` on a thread, for servers whose worker start must not raise: a failure is logged and
        ``status()`` says why (readiness stays false)."""
        def run() -> None:
            try:
                self.start(preload=preload)
            except Exception:
                log.exception("the ad service could not start")

        thread = threading.Thread(target=run, daemon=True, name="fitad-core-start")
        thread.start()
        return thread

    def start(self, preload: tuple[str, ...] = ("txt2img",)) -> None:
        """Load the base pipeline (and ``preload``'s others, e.g. ``inpaint``), resolve the served LoRA and
        start the alias watcher. Blocking; a base model that cannot load raises ApiError 503 (see status())."""
        from fitad.generate.renderer import RenderError

        t0 = time.perf_counter()
        try:
            self.renderer.load(*preload)
            self._base_family = self.renderer.base_family
        except RenderError as exc:
            self._reason = f"base model: {exc}"
            raise ApiError(503, "not_ready", self._reason) from None
        self.start_seconds["base"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        self.refresh()
        self.start_seconds["lora"] = round(time.perf_counter() - t0, 3)
        if self.serve.model_name and self._watcher is None and not self._stopped:
            self._watcher = AliasWatcher(self.refresh, self.serve.poll_s).start()

    def stop(self) -> None:
        self._stopped = True
        if self._watcher is not None:
            self._watcher.stop()

    @property
    def base_family(self) -> str | None:
        """``sd15`` or ``flux`` once the base model is loaded, else None."""
        return self._base_family

    def live(self) -> bool:
        return not self._stopped

    def ready(self) -> bool:
        return not self._stopped and self._base_family is not None and self._resolved

    def status(self) -> dict[str, Any]:
        ready = self.ready()
        return {"live": self.live(), "ready": ready,
                "reason": None if ready else ("stopped" if self._stopped else self._reason),
                "base": {"model": self.render_config.base_model, "family": self._base_family,
                         "load_seconds": dict(self.renderer.load_seconds)},
                "model_name": self.serve.model_name, "alias": self.serve.alias,
                "served": self._served.describe() if self._served else None,
                "last_check": dict(self._check), "swaps": list(self._swaps[-10:]),
                "watcher": bool(self._watcher and self._watcher.alive), "queue": self.gate.stats(),
                "jobs": len(self.jobs), "tracking_uri": self.tracking_uri}

    # ------------------------------------------------------------ the served LoRA
    def refresh(self) -> dict[str, Any]:
        """Check the alias (or the configured LoRA) now; swap the default when it moved. Never raises."""
        with self._refresh_lock:
            before = self._served
            self._check = {"at": time.time(), "error": None}
            try:
                after = self._lookup_default(before)
                if after is not None:
                    self._check_family(after, "the served LoRA")
            except ApiError as exc:
                self._check["error"] = exc.message
                if not self._resolved:
                    self._reason = exc.message
                if before is not None:
                    log.warning("served LoRA unchanged (%s): %s", before.ref, exc.message)
                return self._moved(before, before, exc.message)
            if after is not before:
                self._served = after   # one assignment: admitted requests keep the reference they captured
                self._swaps.append({"at": time.time(), "from": before.ref if before else None,
                                    "to": after.ref if after else None})
                del self._swaps[:-50]
                log.info("served LoRA: %s -> %s", before.ref if before else None, after.ref if after else None)
            self._resolved = True
            return self._moved(before, after, None)

    def reload(self) -> dict[str, Any]:
        """Admin: check the alias now. ``{"before", "after", "changed", "error"}``."""
        return self.refresh()

    @staticmethod
    def _moved(before: LoraRef | None, after: LoraRef | None, error: str | None) -> dict[str, Any]:
        return {"before": before.describe() if before else None, "after": after.describe() if after else None,
                "changed": (before.ref if before else None) != (after.ref if after else None), "error": error}

    def _lookup_default(self, before: LoraRef | None) -> LoraRef | None:
        name, alias = self.serve.model_name, self.serve.alias
        if name:
            version = self.resolver.alias_version(name, alias)
            if version is None:
                raise self.resolver.not_found(name, alias=alias)
            if before is not None and before.name == name and before.version == version:
                return before
            return self.resolver.pinned(name, version, alias=alias, requested=f"{name}@{alias}")
        if self.serve.lora:
            return before if before is not None else self.resolver.fixed(self.serve.lora)
        return None

    def _check_family(self, lora: LoraRef, what: str = "lora") -> None:
        base = self._base_family
        if lora.family is not None and base is not None and lora.family != base:
            raise ApiError(422, "wrong_family", f"lora: {lora.requested} is a {lora.family} LoRA ({lora.ref}); "
                           f"{what} must match the served base model, which is {base} "
                           f"({self.render_config.base_model})", "lora")

    def _lora_for(self, spec: str | None) -> LoraRef | None:
        """The adapter a request renders with, captured now (at admission)."""
        if spec is None:
            if not self._resolved:
                raise ApiError(503, "not_ready", f"the service is not ready: {self._reason}",
                               headers={"Retry-After": str(self.serve.retry_after_s)})
            return self._served
        name, alias, version = parse_lora_spec(spec, self.serve.alias)
        served = self._served
        if served is not None and version is None and name == served.name and alias == served.alias:
            return served   # the watcher's view of the served alias: no registry call per request
        lora = self.resolver.request(spec, self.serve.alias)
        self._check_family(lora)
        return lora

    def loras(self) -> dict[str, Any]:
        """``served`` (the default now), ``loaded`` (the renderer's adapter pools), ``available`` (versions of
        ``serve.model_name`` with their aliases) and ``approved`` (the version carrying ``serve.alias``)."""
        out: dict[str, Any] = {"served": self._served.describe() if self._served else None,
                               "alias": self.serve.alias, "model_name": self.serve.model_name,
                               "loaded": self.renderer.adapter_stats() if self._base_family else {},
                               "available": [], "approved": None, "error": None}
        if self.serve.model_name:
            try:
                out["available"] = self.resolver.versions(self.serve.model_name)
            except ApiError as exc:
                out["error"] = exc.message
            out["approved"] = next((v["version"] for v in out["available"] if self.serve.alias in v["aliases"]),
                                   None)
        return out

    # ------------------------------------------------------------ requests
    def txt2img(self, req: Any, principal: Any = None, progress: Callable | None = None) -> ServeResult:
        return self._make("txt2img", req, {}, principal, progress)

    def ad(self, mode: str, req: Any, images: Mapping[str, Any], principal: Any = None,
           progress: Callable | None = None) -> ServeResult:
        """``product`` / ``person`` / ``advanced`` (rendered) or ``compose`` (overlay only). ``images``:
        ``image`` (and ``product_image`` for advanced, optional ``logo`` RGBA) as arrays, bytes or LoadedImage."""
        if mode not in AD_MODES:
            raise ApiError(404, "not_found", f"mode: {mode!r} is not an ad mode; use one of {', '.join(AD_MODES)}",
                           "mode")
        return self._make(mode, req, images, principal, progress)

    def copy(self, req: Any) -> dict[str, Any]:
        """Caption and hashtags: ``{"caption", "hashtags", "lang", "industry"}``."""
        from fitad.ads.copywriting import make_copy

        try:
            return make_copy(req.industry, lang=req.lang, shop_name=req.shop_name, headline=req.headline,
                             offer=getattr(req, "offer", "")).to_dict()
        except ValueError as exc:
            raise api_error_from(exc) from None

    def tier_of(self, principal: Any) -> str:
        """``free``, ``pro`` or ``admin`` (:class:`fitad.serve.auth.Principal`); no principal is ``free``, as
        an anonymous caller is when auth is off."""
        tier = getattr(principal, "tier", None)
        return tier if isinstance(tier, str) and tier else "free"

    def _ad_config(self, req: Any, tier: str) -> Any:
        free = tier not in PAID_TIERS
        try:
            return dataclasses.replace(self.ads, format=req.format, industry=req.industry, lang=req.lang,
                                       steps=req.steps if req.steps is not None else self.ads.steps,
                                       guidance=req.guidance if req.guidance is not None else self.ads.guidance,
                                       watermark=free,
                                       watermark_max_side=self.serve.free_max_side)
        except _library_errors() as exc:
            raise api_error_from(exc) from None

    def _make(self, mode: str, req: Any, images: Mapping[str, Any], principal: Any,
              progress: Callable | None) -> ServeResult:
        from fitad.ads.make import make_ad
        from fitad.serve.requests import pick_seed

        started = time.perf_counter()
        tier = self.tier_of(principal)
        config = self._ad_config(req, tier)
        seed = pick_seed(req.seed)
        renders = mode != "compose"
        if renders and self._base_family is None:
            raise ApiError(503, "not_ready", f"the service is not ready: {self._reason}",
                           headers={"Retry-After": str(self.serve.retry_after_s)})
        with self.gate.admit() if renders else contextlib.nullcontext():
            lora = self._lora_for(req.lora) if renders else None  # pinned at admission
            if progress is not None and renders:  # admitted: running from here (segmenting comes before steps)
                from fitad.generate.renderer import Progress

                steps = config.steps if config.steps is not None else self.render_config.steps  # None: generate's
                progress(Progress("prepare", 0, int(steps), 0.0))
            try:
                result = make_ad(mode, config, self.renderer if renders else None,
                                 image=_image_input(images.get("image")),
                                 product_image=_image_input(images.get("product_image")),
                                 prompt=req.prompt, headline=req.headline, subcopy=req.subcopy,
                                 shop_name=req.shop_name, offer=req.offer, seed=seed,
                                 lora=lora.path if lora else None, lora_scale=req.lora_scale,
                                 brand_colors=tuple(req.brand_colors), logo=_image_input(images.get("logo")),
                                 progress=progress)
            except _library_errors() as exc:
                raise api_error_from(exc) from None
        meta = result.metadata
        if lora is not None:
            meta["lora"] = {**(meta.get("lora") or {}), **lora.describe()}
        meta.update(seed=seed, tier=tier, watermarked=config.watermark, watermark=meta.get("watermark"))
        if req.negative_prompt:
            meta["ignored"] = {"negative_prompt": "the ad modes build their own negative prompt "
                                                  "(see prompt.negative)"}
        meta["timings"] = {**meta.get("timings", {}), "service_total": round(time.perf_counter() - started, 4)}
        return ServeResult(png=_png_bytes(result.image, meta, result.copy), metadata=meta, image=result.image,
                           copy=result.copy)

    # ------------------------------------------------------------ jobs
    def progress_callback(self, job_id: str) -> Callable[[Any], None]:
        """The renderer's ``Progress(stage, step, total, elapsed)`` callback feeding job ``job_id``."""
        def report(event: Any) -> None:
            try:
                self.jobs.progress(job_id, event.stage, event.step, event.total)
            except ApiError:   # the job was forgotten (TTL, board full): the render goes on
                pass
        return report

    def follow(self, job_id: str | None, owner: str | None, call: Callable[..., ServeResult], *args: Any,
               **kwargs: Any) -> ServeResult:
        """``call(*args, **kwargs)``; with a ``job_id`` (a caller's ``X-Fitad-Job``) as a new job of that id, seen
        only by ``owner``, whose progress ``/jobs/progress`` reports while the request runs."""
        if job_id is None:
            return call(*args, **kwargs)
        return self.run_job(self.jobs.create(job_id=job_id, owner=owner), call, *args, **kwargs)

    def run_job(self, job_id: str, call: Callable[..., ServeResult], *args: Any, **kwargs: Any) -> ServeResult:
        """``call(*args, progress=..., **kwargs)`` (e.g. ``core.txt2img``) with job ``job_id`` following it."""
        try:
            result = call(*args, progress=self.progress_callback(job_id), **kwargs)
        except ApiError as exc:
            self.jobs.fail(job_id, exc)
            raise
        except Exception:
            self.jobs.fail(job_id, "internal error (see the service log)")
            raise
        self.jobs.finish(job_id, result.metadata)
        return result
