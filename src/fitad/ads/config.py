"""Ad settings (``ads:`` section of params.yaml); the renderer's own settings are in ``generate:``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from fitad.config import check_choice, check_range

SEGMENTERS = ("auto", "rembg", "opencv")
FACE_DETECTORS = ("auto", "lbp", "yunet")


@dataclasses.dataclass
class AdConfig:
    """How product / person / advanced / text-to-image ads are made."""

    SECTION: ClassVar[str] = "ads"
    format: str = "instagram_square"
    industry: str = "cafe"
    lang: str = "ko"                 # copy and hashtags: ko | en
    steps: int | None = None         # None: generate.steps
    guidance: float | None = None    # None: generate.guidance
    work_side: int | None = None     # render side before fitting to the format; None: the model's native size
    # product
    segmenter: str = "auto"          # auto: rembg when its model file is on disk, else the OpenCV photo segmenter
    rembg_model: str = "u2net"
    segment_max_side: int = 640
    min_product_area: float = 0.01   # a mask below this share of the photo is "no product found"
    product_fill: float = 0.62       # the product's longer side / the canvas side it is fitted to
    max_product_upscale: float = 1.0  # 1.0: never enlarge the product (its pixels stay the file's own)
    feather_px: int = 6              # soft edge outside each kept mask
    shadow: bool = True
    shadow_strength: float = 0.35
    # person
    face_detector: str = "auto"      # auto: YuNet when face_model is a file, else the LBP cascade
    face_model: str | None = None    # path to a YuNet .onnx (cv2.FaceDetectorYN)
    face_margin: float = 0.35        # face box grown by this share on each side (hair, chin)
    person_strength: float = 0.9     # how much of the non-face area is repainted (1.0: all of it)
    control_scale: float = 0.8       # ControlNet body guide weight (when generate.controlnet_model is set)
    # text-to-image extras
    detail_pass: bool = False
    detail_strength: float = 0.35
    # optional LLM rewriter of the shop owner's request (any OpenAI-compatible endpoint; off when null)
    rewriter_endpoint: str | None = None   # e.g. http://127.0.0.1:8000/v1; the key comes from $FITAD_REWRITER_API_KEY
    rewriter_model: str = "default"
    rewriter_timeout_s: float = 10.0
    # input limits
    max_bytes: int = 30_000_000
    max_pixels: int = 40_000_000
    min_image_side: int = 64
    # free tier
    watermark: bool = False
    watermark_text: str = "Fit-AD"
    watermark_max_side: int = 720

    def __post_init__(self) -> None:
        s = self.SECTION
        from fitad.ads.formats import get_format

        try:
            get_format(self.format)
        except ValueError as exc:
            from fitad.config import ConfigError
            raise ConfigError(f"{s}.format: {exc}") from None
        check_choice(s, "lang", self.lang, ("ko", "en"))
        check_range(s, "steps", self.steps, lo=1, hi=200, allow_none=True)
        check_range(s, "guidance", self.guidance, lo=0.0, hi=50.0, allow_none=True)
        check_range(s, "work_side", self.work_side, lo=64, hi=2048, allow_none=True)
        check_choice(s, "segmenter", self.segmenter, SEGMENTERS)
        check_range(s, "segment_max_side", self.segment_max_side, lo=128, hi=4096)
        check_range(s, "min_product_area", self.min_product_area, lo=0.0, hi=0.9)
        check_range(s, "product_fill", self.product_fill, lo=0.1, hi=1.0)
        check_range(s, "max_product_upscale", self.max_product_upscale, lo=0.1, hi=8.0)
        check_range(s, "feather_px", self.feather_px, lo=0, hi=64)
        check_range(s, "shadow_strength", self.shadow_strength, lo=0.0, hi=1.0)
        check_choice(s, "face_detector", self.face_detector, FACE_DETECTORS)
        check_range(s, "face_margin", self.face_margin, lo=0.0, hi=2.0)
        check_range(s, "person_strength", self.person_strength, lo=0.05, hi=1.0)
        check_range(s, "control_scale", self.control_scale, lo=0.0, hi=2.0)
        check_range(s, "detail_strength", self.detail_strength, lo=0.05, hi=1.0)
        if self.rewriter_endpoint is not None and not self.rewriter_endpoint.startswith(("http://", "https://")):
            from fitad.config import ConfigError
            raise ConfigError(f"{s}.rewriter_endpoint = {self.rewriter_endpoint!r}: must be an http(s) URL")
        check_range(s, "rewriter_timeout_s", self.rewriter_timeout_s, lo=0.1, hi=120.0)
        check_range(s, "max_bytes", self.max_bytes, lo=1024)
        check_range(s, "max_pixels", self.max_pixels, lo=4096)
        check_range(s, "min_image_side", self.min_image_side, lo=16)
        if not self.watermark_text.strip():
            from fitad.config import ConfigError
            raise ConfigError(f"{s}.watermark_text: must not be empty")
        check_range(s, "watermark_max_side", self.watermark_max_side, lo=64, hi=4096)
