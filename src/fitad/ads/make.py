"""Making an ad: text-to-image, product, person, advanced and compose (overlay only), one entry function.

``make_ad(mode, config, renderer, ...)`` returns an :class:`AdResult` (the image at the format's exact size,
its copy and hashtags, and metadata). What each mode keeps:

* **product**: the product's pixels (segmented, or the photo's alpha) are copied back bit-identical to the
  photo as placed; the background is repainted by the inpainting pipeline, with a contact shadow.
* **person**: every detected face is copied back exactly; the rest (outfit, background, the canvas beyond the
  photo) is repainted, guided by the photo's edges through a ControlNet when one is configured.
* **advanced**: a person photo and a product photo; faces and product kept, the rest repainted.
* **txt2img**: nothing to keep; optional detail pass on faces.
* **compose**: the photo fitted to the format, headline only.

Generation runs at the model's native pixel count in the format's aspect (:class:`fitad.ads.formats.WorkFrame`)
and is scaled uniformly to the format, cropping a few pixels rather than stretching.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fitad.ads.composite import (Layer, contact_shadow, contain_scale, edge_guide, extend_edges, intrusion,
                                 paste_back, place)
from fitad.ads.config import AdConfig
from fitad.ads.detail import detail_pass
from fitad.ads.formats import AdFormat, WorkFrame, fit_cover, get_format, work_size
from fitad.ads.subjects import SubjectError, detect_faces, person_faces, product_mask
from fitad.prep.io import ImageLoadError, LoadedImage, check_min_side, check_pixels, load_image

MODES = ("txt2img", "product", "person", "advanced", "compose")
ImageInput = bytes | str | os.PathLike | np.ndarray


class AdError(ValueError):
    """A request that cannot be made into an ad; the message names the field."""


@dataclasses.dataclass
class AdResult:
    image: np.ndarray
    metadata: dict[str, Any]
    copy: dict[str, Any]

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``path`` (PNG, metadata in its text chunks) and the JSON beside it, both atomically."""
        from fitad.ads.result import write_ad

        return write_ad(self, Path(path))


# ---------------------------------------------------------------- inputs

def load_photo(source: ImageInput, config: AdConfig, field: str) -> LoadedImage:
    """One photo through the project's image loader, with the ad limits; errors name ``field``."""
    try:
        if isinstance(source, np.ndarray):
            if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] not in (3, 4):
                raise ImageLoadError("expected an H x W x 3 (or 4) uint8 array")
            height, width = source.shape[:2]
            check_pixels(width, height, config.max_pixels, "ads")
            check_min_side(width, height, config.min_image_side, "ads")
            alpha = source[..., 3].copy() if source.shape[2] == 4 and source[..., 3].min() < 255 else None
            return LoadedImage(np.ascontiguousarray(source[..., :3]), "RGBA" if alpha is not None else "RGB",
                               "array", [], alpha)
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(f"no such file: {path}")
            size = path.stat().st_size
            if size > config.max_bytes:
                raise ImageLoadError(f"{path.name} is {size:,} bytes, above the limit of {config.max_bytes:,} "
                                     "(ads.max_bytes)")
            data, name = path.read_bytes(), path.name
        else:
            data, name = bytes(source), "upload"
            if len(data) > config.max_bytes:
                raise ImageLoadError(f"{len(data):,} bytes, above the limit of {config.max_bytes:,} (ads.max_bytes)")
        return load_image(data, name, max_pixels=config.max_pixels, min_side=config.min_image_side, section="ads")
    except ImageLoadError as exc:
        raise ImageLoadError(f"{field}: {exc}") from None


# ---------------------------------------------------------------- helpers

class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - self._t, 4)
        self._t = now


def _fill_outside(canvas: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Fill the canvas beyond the placed photo with its blurred edge colours (a neutral start for outpainting)."""
    if coverage.all():
        return canvas
    ys, xs = np.nonzero(coverage)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    inner = canvas[y0:y1, x0:x1]
    big = np.pad(inner, ((y0, canvas.shape[0] - y1), (x0, canvas.shape[1] - x1), (0, 0)), mode="edge")
    k = max(3, (max(canvas.shape[:2]) // 24) | 1)
    blurred = cv2.blur(big, (k, k))
    out = canvas.copy()
    out[~coverage] = blurred[~coverage]
    return out


def _render_kept(renderer: Any, frame: WorkFrame, init: np.ndarray, keep: np.ndarray, plan: Any, config: AdConfig,
                 seed: int, lora: Any, lora_scale: float, strength: float, control: bool,
                 progress: Callable | None) -> tuple[np.ndarray, Any]:
    """Repaint everything but ``keep`` at the render size, return the result at canvas size."""
    repaint = np.where(keep > 0, 0, 255).astype(np.uint8)
    # the repainted area reaches 2 canvas px into the kept one, so the generated edge meets the paste-back
    repaint = cv2.dilate(repaint, np.ones((5, 5), np.uint8))
    work_init = frame.to_work(init)
    work_mask = np.where(frame.to_work(repaint) >= 128, 255, 0).astype(np.uint8)
    control_image = edge_guide(work_init) if control else None
    result = renderer.inpaint(work_init, work_mask, plan.prompt, negative_prompt=plan.negative_prompt,
                              steps=config.steps, guidance=config.guidance, seed=seed, strength=strength,
                              lora=lora, lora_scale=lora_scale, control_image=control_image,
                              control_scale=config.control_scale, progress=progress)
    return frame.to_canvas(result.image), result


def _product_layer(photo: LoadedImage, config: AdConfig, fmt: AdFormat, name: str, fill: float,
                   anchor: tuple[float, float]) -> tuple[Layer, dict]:
    subject = product_mask(photo.rgb, config, photo.alpha, name=name)
    x0, y0, x1, y1 = subject.boxes[0]
    sx0, sy0, sx1, sy1 = fmt.safe_box()
    scale = min(fill * (sx1 - sx0) / (x1 - x0), fill * (sy1 - sy0) / (y1 - y0), config.max_product_upscale)
    cx, cy = anchor[0] * fmt.width, anchor[1] * fmt.height
    origin = (round(cx - (x0 + x1) / 2 * scale), round(cy - (y0 + y1) / 2 * scale))
    only_product = np.where(subject.mask > 0, 255, 0).astype(np.uint8)
    layer = place(photo.rgb, only_product, fmt.size, scale, origin)
    # only the product is drawn from this photo: its surroundings are repainted, and the feathered rim is the
    # product's own edge colours fading out (not the old background)
    layer.rgb = extend_edges(layer.rgb, layer.mask, config.feather_px)
    layer.coverage = cv2.dilate(layer.mask, np.ones((3, 3), np.uint8), iterations=config.feather_px + 1) > 0
    return layer, {"segmenter": subject.backend, "photo_box": list(subject.boxes[0]), "scale": round(scale, 4),
                   "canvas_box": list(layer.box)}


def _person_layer(photo: LoadedImage, config: AdConfig, fmt: AdFormat, name: str) -> tuple[Layer, dict]:
    faces = person_faces(photo.rgb, config, name=name)
    scale = contain_scale((photo.rgb.shape[1], photo.rgb.shape[0]), fmt.size)
    sw, sh = round(photo.rgb.shape[1] * scale), round(photo.rgb.shape[0] * scale)
    origin = ((fmt.width - sw) // 2, (fmt.height - sh) // 2)
    layer = place(photo.rgb, faces.mask, fmt.size, scale, origin)
    boxes = [[round(origin[0] + v * scale) if i % 2 == 0 else round(origin[1] + v * scale)
              for i, v in enumerate(box)] for box in faces.boxes]
    return layer, {"face_detector": faces.backend, "faces": boxes, "scale": round(scale, 4)}


# ---------------------------------------------------------------- entry point

def make_ad(mode: str, config: AdConfig, renderer: Any = None, *, image: ImageInput | None = None,
            product_image: ImageInput | None = None, prompt: str = "", headline: str = "", subcopy: str = "",
            shop_name: str = "", offer: str = "", seed: int = 0, lora: Any = None, lora_scale: float = 1.0,
            font_path: str | None = None, brand_colors: tuple[str, ...] = (), logo: np.ndarray | None = None,
            copy_variant: int = 0, progress: Callable | None = None) -> AdResult:
    """Make one ad. ``image`` is the product photo (product), the person photo (person, advanced) or the
    photo to caption (compose); ``product_image`` is the product photo of advanced mode.

    Raises a ``ValueError`` subclass naming the field for bad input: :class:`AdError`, ``ImageLoadError``,
    ``SubjectError`` (no product / no face), ``FormatError``, ``PromptError``, ``OverlayError``, ``LoraLoadError``.
    """
    from fitad.ads.copywriting import make_copy
    from fitad.ads.overlay import OverlaySpec, overlay_text
    from fitad.ads.watermark import add_watermark
    from fitad.generate.prompts import build_prompt

    if mode not in MODES:
        raise AdError(f"mode {mode!r} is not known: choose one of {', '.join(MODES)}")
    needs_model = mode in ("txt2img", "product", "person", "advanced")
    if needs_model and renderer is None:
        raise AdError(f"mode {mode!r} needs a renderer")
    if mode != "txt2img" and image is None:
        raise AdError(f"image: {mode} mode needs a photo")
    if mode == "advanced" and product_image is None:
        raise AdError("product_image: advanced mode needs a product photo beside the person photo")
    fmt = get_format(config.format)
    clock = _Clock()
    meta: dict[str, Any] = {"mode": mode, "format": fmt.to_dict(), "industry": config.industry, "seed": seed}
    # checked before any model work, so a bad headline costs nothing
    spec = OverlaySpec(headline=headline, subcopy=subcopy, font_path=font_path, brand_colors=tuple(brand_colors),
                       logo=logo) if headline.strip() else None
    if spec is not None:  # a headline that cannot fit fails now, not after the render
        overlay_text(np.full((fmt.height, fmt.width, 3), 128, np.uint8), spec, safe_box=fmt.safe_box())
        clock.lap("headline_check")
    photo = load_photo(image, config, "image") if image is not None else None
    product_photo = load_photo(product_image, config, "product_image") if product_image is not None else None
    if photo is not None:
        meta["input"] = {"size": list(photo.size), "format": photo.source_format, "notes": photo.notes}
    clock.lap("load")

    plan = None
    if needs_model:
        from fitad.generate.lora_source import resolve_adapter

        source = resolve_adapter(lora) if lora is not None else None
        trigger = source.meta.trigger if source is not None else None
        if config.rewriter_endpoint and prompt.strip():
            from fitad.generate.rewriter import rewrite_request

            rewritten = rewrite_request(prompt, endpoint=config.rewriter_endpoint, model=config.rewriter_model,
                                        api_key=os.environ.get("FITAD_REWRITER_API_KEY") or None,
                                        timeout_s=config.rewriter_timeout_s, industry=config.industry)
            meta["rewriter"] = {"used": rewritten.used, "error": rewritten.error, "original": prompt,
                                "seconds": round(rewritten.seconds, 3)}
            prompt = rewritten.text if rewritten.used else prompt
        plan = build_prompt(prompt, industry=config.industry, trigger=trigger, style=fmt.key if fmt.key in
                            _styles() else "custom", mode=mode if mode in ("product", "person") else "txt2img",
                            count_tokens=renderer.count_tokens, max_tokens=renderer.token_budget())
        meta["prompt"] = {"used": plan.prompt, "negative": plan.negative_prompt, "dropped": plan.dropped,
                          "dropped_negative": plan.dropped_negative, "unknown_words": plan.unknown_words,
                          "translated": plan.translated, "tokens": plan.token_count, "budget": plan.budget,
                          "warnings": plan.warnings}
        lora = source
        native = config.work_side or renderer.native_size()
        frame = WorkFrame(fmt.width, fmt.height, *work_size(fmt, native, renderer.size_multiple()))
        meta["render_size"] = [frame.w, frame.h]
        clock.lap("prompt")

    subject_mask = None
    kept: dict[str, Any] = {}
    render = None
    if mode == "compose":
        canvas = fit_cover(photo.rgb, fmt.width, fmt.height)
    elif mode == "txt2img":
        render = renderer.txt2img(plan.prompt, negative_prompt=plan.negative_prompt, width=frame.w, height=frame.h,
                                  steps=config.steps, guidance=config.guidance, seed=seed, lora=lora,
                                  lora_scale=lora_scale, progress=progress)
        canvas = frame.to_canvas(render.image)
        clock.lap("render")
        if config.detail_pass:
            boxes, backend = detect_faces(canvas, config)
            canvas, done = detail_pass(renderer, canvas, boxes, plan.prompt, plan.negative_prompt,
                                       strength=config.detail_strength, seed=seed, lora=lora, lora_scale=lora_scale,
                                       steps=config.steps)
            meta["detail_pass"] = {"detector": backend, "regions": done,
                                   "skipped": [] if done else ["no faces found"],
                                   "hands": "skipped: no hand detector is configured"}
            clock.lap("detail")
    else:
        layers: list[Layer] = []
        if mode in ("person", "advanced"):
            person, info = _person_layer(photo, config, fmt, "image")
            layers.append(person)
            kept["faces"] = info
        if mode in ("product", "advanced"):
            if mode == "product":
                layer, info = _product_layer(photo, config, fmt, "image", config.product_fill, (0.5, 0.56))
            else:
                face_x = np.mean([(b[0] + b[2]) / 2 for b in kept["faces"]["faces"]]) / fmt.width
                anchor = (0.24 if face_x > 0.5 else 0.76, 0.72)
                layer, info = _product_layer(product_photo, config, fmt, "product_image", 0.36, anchor)
                # the product stands behind the face: a face pixel is never covered
                face_keep = layers[0].mask > 0
                hidden = int(np.count_nonzero((layer.mask > 0) & face_keep))
                layer.mask[face_keep] = 0
                layer.coverage &= ~cv2.dilate(layers[0].mask, np.ones((3, 3), np.uint8),
                                              iterations=config.feather_px + 1).astype(bool)
                info["hidden_behind_face_px"] = hidden
            layers.append(layer)
            kept["product"] = info
        clock.lap("segment")
        keep = np.zeros((fmt.height, fmt.width), np.uint8)
        init = np.zeros((fmt.height, fmt.width, 3), np.uint8)
        covered = np.zeros((fmt.height, fmt.width), bool)
        for layer in layers:
            init[layer.coverage] = layer.rgb[layer.coverage]
            covered |= layer.coverage
            keep |= layer.mask
        init = _fill_outside(init, covered)
        strength = 1.0 if mode == "product" else config.person_strength
        control = mode != "product" and bool(renderer.config.controlnet_model) and renderer.base_family == "sd15"
        generated, render = _render_kept(renderer, frame, init, keep, plan, config, seed, lora, lora_scale,
                                         strength, control, progress)
        clock.lap("render")
        for layer, name in zip(layers, ("faces", "product") if mode == "advanced" else (next(iter(kept)),)):
            kept[name]["intrusion"] = intrusion(generated, layer)
        product_layer = layers[-1] if "product" in kept else None
        if product_layer is not None and config.shadow:
            generated = contact_shadow(generated, product_layer.mask, config.shadow_strength)
        canvas = generated
        for layer in layers:
            canvas = paste_back(canvas, layer, config.feather_px)
        for layer, name in zip(layers, ("faces", "product") if mode == "advanced" else (next(iter(kept)),)):
            kept[name]["kept_pixels"] = int(np.count_nonzero(layer.mask))
        kept["control"] = ("controlnet edge guide" if control else
                           "skipped: the ControlNet guide is for the SD1.5 family" if renderer.config.controlnet_model
                           and mode != "product" else None)
        subject_mask = keep
        clock.lap("composite")
    if kept:
        meta["kept"] = kept
    if render is not None:
        meta.update(base_model=render.base_model, family=render.family, pipeline=render.pipeline,
                    steps=render.steps, guidance=render.guidance, lora=render.lora,
                    render_timings=render.metadata()["timings"])

    if spec is not None:
        canvas, report = overlay_text(canvas, spec, subject_mask=subject_mask, safe_box=fmt.safe_box())
        meta["overlay"] = report
        clock.lap("overlay")
    copy = make_copy(config.industry, lang=config.lang, shop_name=shop_name, headline=headline, offer=offer,
                     variant=copy_variant).to_dict()
    clock.lap("copy")
    if config.watermark:
        canvas, report = add_watermark(canvas, text=config.watermark_text, max_side=config.watermark_max_side)
        meta["watermark"] = report
        clock.lap("watermark")
    meta["size"] = [int(canvas.shape[1]), int(canvas.shape[0])]
    meta["timings"] = clock.timings
    return AdResult(image=canvas, metadata=meta, copy=copy)


def _styles() -> tuple[str, ...]:
    from fitad.generate.industries import STYLE_PRESETS

    return tuple(STYLE_PRESETS)


__all__ = ["MODES", "AdError", "AdResult", "SubjectError", "load_photo", "make_ad"]
