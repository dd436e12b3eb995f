"""SNS ad formats: exact pixel sizes, the zones platform UI covers, and fitting an image without stretching.

Sizes are the platforms' recommended upload sizes. ``safe_box`` is where headline text may go: stories and
reels put the account bar over the top ~14 % and the reply field and buttons over the bottom ~18 % of the
frame, so text stays out of both; other formats keep a 5 % margin.
"""

from __future__ import annotations

import dataclasses
import math
import re

import cv2
import numpy as np


class FormatError(ValueError):
    """An unknown or malformed format; the message lists the valid ones."""


@dataclasses.dataclass(frozen=True)
class AdFormat:
    key: str
    label: str
    width: int
    height: int
    top_unsafe: float = 0.05     # fraction of the height kept free of text at the top
    bottom_unsafe: float = 0.05
    side_unsafe: float = 0.05

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def safe_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the area text and logos may use."""
        x0 = round(self.width * self.side_unsafe)
        return (x0, round(self.height * self.top_unsafe), self.width - x0,
                self.height - round(self.height * self.bottom_unsafe))

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "width": self.width, "height": self.height,
                "safe_box": list(self.safe_box())}


FORMATS: dict[str, AdFormat] = {f.key: f for f in (
    AdFormat("instagram_square", "Instagram feed 1:1", 1080, 1080),
    AdFormat("instagram_portrait", "Instagram feed 4:5", 1080, 1350),
    AdFormat("instagram_portrait_3x4", "Instagram feed 3:4", 1080, 1440),
    AdFormat("instagram_story", "Instagram story / reels 9:16", 1080, 1920,
             top_unsafe=250 / 1920, bottom_unsafe=340 / 1920, side_unsafe=0.06),
    AdFormat("facebook_link", "Facebook link 1.91:1", 1200, 630),
    AdFormat("kakao_square", "KakaoTalk channel 1:1", 720, 720),
    AdFormat("kakao_banner", "KakaoTalk banner 2:1", 800, 400),
)}
ALIASES = {"1:1": "instagram_square", "square": "instagram_square", "feed": "instagram_square",
           "4:5": "instagram_portrait", "portrait": "instagram_portrait", "3:4": "instagram_portrait_3x4",
           "9:16": "instagram_story", "story": "instagram_story", "reels": "instagram_story",
           "facebook": "facebook_link", "kakao": "kakao_square", "kakao_wide": "kakao_banner"}
MIN_SIDE, MAX_SIDE = 64, 4096


def format_names() -> list[str]:
    return [*FORMATS, *ALIASES, "WIDTHxHEIGHT"]


def get_format(name: str) -> AdFormat:
    """A named format, an alias (``4:5``, ``story``), or a custom ``WIDTHxHEIGHT`` (``custom:1200x800`` too)."""
    text = str(name).strip().lower()
    key = ALIASES.get(text, text)
    if key in FORMATS:
        return FORMATS[key]
    match = re.fullmatch(r"(?:custom:)?(\d+)\s*[x×]\s*(\d+)", text)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        for side, value in (("width", width), ("height", height)):
            if not MIN_SIDE <= value <= MAX_SIDE:
                raise FormatError(f"format {name!r}: {side} {value} must be between {MIN_SIDE} and {MAX_SIDE} px")
        return AdFormat(f"custom_{width}x{height}", f"Custom {width}x{height}", width, height)
    raise FormatError(f"unknown format {name!r}: choose one of {', '.join(format_names())}")


def work_size(fmt: AdFormat, native: int, multiple: int = 8) -> tuple[int, int]:
    """The render size for ``fmt``: the model's native pixel count at the format's aspect, sides ``multiple``-aligned."""
    width = native * math.sqrt(fmt.aspect)
    height = native / math.sqrt(fmt.aspect)
    longest = max(width, height)
    if longest > MAX_SIDE:  # very wide or tall custom formats: keep the render within the pipelines' limit
        width, height = width * MAX_SIDE / longest, height * MAX_SIDE / longest
    return (max(multiple, min(MAX_SIDE // multiple, int(round(width / multiple))) * multiple),
            max(multiple, min(MAX_SIDE // multiple, int(round(height / multiple))) * multiple))


def cover_box(src_w: int, src_h: int, dst_w: int, dst_h: int,
              focus: tuple[float, float] | None = None) -> tuple[int, int, int, int]:
    """The source crop (x0, y0, x1, y1) with the destination's aspect that keeps ``focus`` (x, y) most central."""
    scale = max(dst_w / src_w, dst_h / src_h)
    crop_w, crop_h = min(src_w, round(dst_w / scale)), min(src_h, round(dst_h / scale))
    fx, fy = focus if focus is not None else (src_w / 2, src_h / 2)
    x0 = int(min(max(round(fx - crop_w / 2), 0), src_w - crop_w))
    y0 = int(min(max(round(fy - crop_h / 2), 0), src_h - crop_h))
    return x0, y0, x0 + crop_w, y0 + crop_h


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area filter when shrinking, Lanczos when enlarging (the one resampler the ad modes use)."""
    if (rgb.shape[1], rgb.shape[0]) == (width, height):
        return rgb.copy()
    shrink = width * height < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def fit_cover(rgb: np.ndarray, width: int, height: int, focus: tuple[float, float] | None = None) -> np.ndarray:
    """Scale uniformly to cover ``width`` x ``height`` and crop around ``focus``: never stretched."""
    x0, y0, x1, y1 = cover_box(rgb.shape[1], rgb.shape[0], width, height, focus)
    return resize(rgb[y0:y1, x0:x1], width, height)


@dataclasses.dataclass
class WorkFrame:
    """Maps the format canvas (W x H) to the render size (w x h) by one uniform scale ``g`` and a centred crop."""

    W: int
    H: int
    w: int
    h: int

    @property
    def g(self) -> float:
        return max(self.W / self.w, self.H / self.h)

    def _big(self) -> tuple[int, int, int, int]:
        bw, bh = math.ceil(self.w * self.g), math.ceil(self.h * self.g)
        return bw, bh, (bw - self.W) // 2, (bh - self.H) // 2

    def to_work(self, canvas: np.ndarray, nearest: bool = False) -> np.ndarray:
        bw, bh, cx, cy = self._big()
        pad = ((cy, bh - self.H - cy), (cx, bw - self.W - cx)) + (((0, 0),) if canvas.ndim == 3 else ())
        big = np.pad(canvas, pad, mode="edge")
        if nearest:
            return cv2.resize(big, (self.w, self.h), interpolation=cv2.INTER_NEAREST)
        return resize(big, self.w, self.h)

    def to_canvas(self, work: np.ndarray) -> np.ndarray:
        bw, bh, cx, cy = self._big()
        return resize(work, bw, bh)[cy:cy + self.H, cx:cx + self.W]
