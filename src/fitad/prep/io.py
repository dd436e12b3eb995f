"""Safe image loading and atomic file writes.

Every way an input can be bad (empty, not an image, truncated, too large) becomes an
:class:`ImageLoadError` with a one-line reason meant for the report and the screen; every way an
image can be unusual but fine (16-bit, grayscale, palette, CMYK, alpha, EXIF orientation) is
normalised to an 8-bit RGB array and noted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageLoadError(ValueError):
    """An input file cannot be used; the message is the reason shown to the user."""


@dataclasses.dataclass
class LoadedImage:
    rgb: np.ndarray  # H x W x 3, uint8
    source_mode: str
    source_format: str
    notes: list[str]
    alpha: np.ndarray | None = None  # H x W uint8 when the source had transparent pixels (RGB is on white)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def list_inputs(input_dir: str | os.PathLike) -> list[Path]:
    """The top-level image files of ``input_dir`` (by extension), sorted; sub-folders are ignored."""
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input directory {str(root)!r} does not exist or is not a directory")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16/32-bit or float pixel data to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).astype(np.uint8)
    top = float(arr.max(initial=0))
    scale = 255.0 / 65535.0 if top > 255 else 1.0  # 16-bit data, or 8-bit values in a wide type
    return np.clip(arr.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)


def _flatten_alpha(img: Image.Image, notes: list[str]) -> tuple[Image.Image, np.ndarray | None]:
    """Composite a transparent image on white: cut-outs keep their subject and lose the checkerboard.

    Returns the flattened image and the alpha channel when any pixel is transparent (ads use it as a mask).
    """
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    transparent = alpha.min() < 255
    if transparent:
        notes.append("transparent areas composited on white")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB"), (alpha.copy() if transparent else None)


def _normalise_mode(img: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        notes.append(f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} grayscale scaled to 8-bit")
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        flat, alpha = _flatten_alpha(img, notes)
        return np.asarray(flat), alpha
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1", "P"):
        notes.append({"L": "grayscale", "1": "1-bit", "P": "palette"}[mode] + " converted to RGB")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    return np.asarray(img.convert("RGB")), None


def check_pixels(width: int, height: int, max_pixels: int, section: str = "prep") -> None:
    """Refuse images above ``max_pixels`` (decompression bombs); the message names ``section.max_pixels``."""
    if width * height > max_pixels:
        raise ImageLoadError(f"refused: {width}x{height} = {width * height:,} pixels is above the "
                             f"limit of {max_pixels:,} ({section}.max_pixels)")


def check_min_side(width: int, height: int, min_side: int, section: str = "prep") -> None:
    if min(width, height) < min_side:
        raise ImageLoadError(f"too small: {width}x{height} px, each side must be at least "
                             f"{min_side} px ({section}.min_image_side)")


def load_image(data: bytes, name: str = "<bytes>", *, max_pixels: int = 64_000_000,
               min_side: int = 32, section: str = "prep") -> LoadedImage:
    """Decode image bytes to 8-bit RGB, or raise ImageLoadError with the reason.

    The pixel limit is checked on the header, before any pixel is decoded, so a decompression bomb
    costs nothing. Truncated files are refused rather than half-loaded. ``section`` is the config section
    the limits come from, named in the messages (``prep``, ``ads``).
    """
    if not data:
        raise ImageLoadError("empty file (0 bytes)")
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces Pillow's global one
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError:
            raise ImageLoadError(f"not an image: cannot identify the format of {name} "
                                 f"({len(data)} bytes)") from None
        except Exception as exc:  # malformed headers raise anything from SyntaxError to struct.error
            raise ImageLoadError(f"corrupt image header: {type(exc).__name__}: {exc}") from None
        width, height = img.size
        check_pixels(width, height, max_pixels, section)
        fmt = img.format or "?"
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
        except Exception as exc:
            raise ImageLoadError(f"truncated or corrupt {fmt} data: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit

    notes: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"first of {img.n_frames} frames used")
    try:
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
            notes.append(f"EXIF orientation {orientation} applied")
    except Exception as exc:  # broken EXIF must not cost the image
        notes.append(f"EXIF ignored ({type(exc).__name__})")
    source_mode = img.mode
    rgb, alpha = _normalise_mode(img, notes)
    rgb = np.ascontiguousarray(rgb)
    check_min_side(rgb.shape[1], rgb.shape[0], min_side, section)
    return LoadedImage(rgb=rgb, source_mode=source_mode, source_format=fmt, notes=notes, alpha=alpha)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array (OpenCV's encoder: several times faster than Pillow's)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
