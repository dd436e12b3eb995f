"""The project's one image loader: every stage (prep, training, ads) decodes pictures here.

Every way an input can be bad (empty, not an image, truncated, too large) becomes an
:class:`ImageLoadError` with a one-line reason meant for the report and the screen; every way an
image can be unusual but fine (16-bit, grayscale, palette, CMYK, alpha, colour-keyed transparency,
EXIF orientation) is normalised to an 8-bit RGB array and noted. Transparent pixels are composited
on white; the alpha channel is kept beside the RGB array.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageLoadError", "LoadedImage", "check_min_side", "check_pixels", "image_size", "load_image"]

# EXIF orientations whose display swaps width and height (transpose, rotate 90/270, transverse)
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


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


def _to_uint8(arr: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Scale 16/32-bit or float pixel data to 0..255.

    ``sixteen_bit`` data is always scaled from 0..65535 (a dark 16-bit image stays dark); for wider
    integer types without that knowledge, values above 255 mean 16-bit data, else 8-bit values.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).astype(np.uint8)
    top = float(arr.max(initial=0))
    scale = 255.0 / 65535.0 if sixteen_bit or top > 255 else 1.0
    return np.clip(arr.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)


def _flatten_alpha(img: Image.Image, notes: list[str]) -> tuple[Image.Image, np.ndarray | None]:
    """Composite a transparent image on white: cut-outs keep their subject and lose the checkerboard.

    Covers alpha channels, palette transparency and colour keys (PNG ``tRNS`` on RGB/grey images:
    Pillow's RGBA conversion turns the key colour transparent). Returns the flattened image and the
    alpha channel when any pixel is transparent (ads use it as a mask).
    """
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    transparent = alpha.min() < 255
    if transparent:
        notes.append("transparent areas composited on white")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB"), (alpha.copy() if transparent else None)


def _composite_gray(gray: np.ndarray, alpha: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey uint8 + alpha -> RGB on white (the 16-bit path, which Pillow's RGBA conversion clips)."""
    if alpha.min() == 255:
        return np.repeat(gray[..., None], 3, axis=2), None
    notes.append("transparent areas composited on white")
    a = alpha.astype(np.float32) / 255.0
    flat = np.clip(gray.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(flat[..., None], 3, axis=2), alpha


def _normalise_mode(img: Image.Image, notes: list[str], fmt: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    mode = img.mode
    if mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        sixteen = mode in _SIXTEEN_BIT_MODES or (mode == "I" and fmt == "PNG")  # older Pillow: 16-bit PNG as "I"
        notes.append(f"{'16-bit' if sixteen else mode + '-mode'} grayscale scaled to 8-bit")
        raw = np.asarray(img)
        gray = _to_uint8(raw, sixteen_bit=sixteen)
        key = img.info.get("transparency")
        if isinstance(key, int) and not isinstance(key, bool):  # tRNS colour key of a grey image
            return _composite_gray(gray, np.where(raw == key, 0, 255).astype(np.uint8), notes)
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
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


def _open(source: bytes | str | os.PathLike, name: str) -> Image.Image:
    """Open the header only (no pixels decoded), with Pillow's global pixel limit lifted: callers check theirs."""
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.UnidentifiedImageError:
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        raise ImageLoadError(f"not an image: cannot identify the format of {name} ({size} bytes)") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # cannot read the file (paths only): the caller's error, not the image's
    except Exception as exc:  # malformed headers raise anything from SyntaxError to struct.error
        raise ImageLoadError(f"corrupt image header: {type(exc).__name__}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if value else 1
    except Exception:  # broken EXIF must not cost the image
        return 1


def image_size(path: str | os.PathLike, *, max_pixels: int | None = None, section: str = "prep") -> tuple[int, int]:
    """The displayed (width, height) of an image file, read from its header: EXIF orientations that
    rotate by 90 degrees swap the sides, as :func:`load_image` does. No pixel is decoded.

    Raises ImageLoadError (not an image, corrupt header, above ``max_pixels``) or OSError (unreadable).
    """
    name = Path(path).name
    with _open(path, name) as img:
        width, height = img.size
        if max_pixels is not None:
            check_pixels(width, height, max_pixels, section)
        if _orientation(img) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
    return width, height


def load_image(data: bytes, name: str = "<bytes>", *, max_pixels: int = 64_000_000,
               min_side: int = 32, section: str = "prep") -> LoadedImage:
    """Decode image bytes to 8-bit RGB, or raise ImageLoadError with the reason.

    The pixel limit is checked on the header, before any pixel is decoded, so a decompression bomb
    costs nothing. Truncated files are refused rather than half-loaded. ``section`` is the config section
    the limits come from, named in the messages (``prep``, ``ads``).
    """
    if not data:
        raise ImageLoadError("empty file (0 bytes)")
    img = _open(data, name)
    width, height = img.size
    check_pixels(width, height, max_pixels, section)
    fmt = img.format or "?"
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit above replaces Pillow's global one
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
    rgb, alpha = _normalise_mode(img, notes, fmt)
    rgb = np.ascontiguousarray(rgb)
    check_min_side(rgb.shape[1], rgb.shape[0], min_side, section)
    return LoadedImage(rgb=rgb, source_mode=source_mode, source_format=fmt, notes=notes, alpha=alpha)
