"""Input files of the prep stage: which files are read, capped reads, hashing, PNG encoding.

Decoding lives in :mod:`fitad.images`, the one loader of the project (prep, training and ads all use
it); its names are re-exported here so ``from fitad.prep.io import load_image, ImageLoadError,
LoadedImage, check_pixels, check_min_side`` keeps working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import features

from fitad.images import ImageLoadError, LoadedImage, check_min_side, check_pixels, image_size, load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "InputScan", "LoadedImage", "check_file_bytes", "check_min_side",
           "check_pixels", "encode_png", "image_size", "list_inputs", "load_image", "read_input", "scan_inputs",
           "sha256_bytes"]

BASE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _avif_readable() -> bool:
    try:
        return bool(features.check("avif"))
    except Exception:  # an older Pillow that does not know the feature
        return False


# AVIF is read where Pillow was built with libavif (wheels of Pillow >= 11.3); else it is explained
IMAGE_EXTENSIONS = BASE_EXTENSIONS + ((".avif",) if _avif_readable() else ())

# picture formats people drop in an input folder that the stage does not read, and what they are called
UNSUPPORTED_IMAGES = {
    ".heic": "HEIC", ".heif": "HEIF", ".hif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL", ".svg": "SVG",
    ".svgz": "SVG", ".psd": "PSD", ".ai": "Adobe Illustrator", ".eps": "EPS", ".pdf": "PDF",
    ".jp2": "JPEG 2000", ".j2k": "JPEG 2000", ".ico": "ICO", ".tga": "TGA", ".qoi": "QOI",
    ".dng": "camera RAW (DNG)", ".cr2": "camera RAW (CR2)", ".cr3": "camera RAW (CR3)", ".nef": "camera RAW (NEF)",
    ".arw": "camera RAW (ARW)", ".raf": "camera RAW (RAF)", ".orf": "camera RAW (ORF)", ".rw2": "camera RAW (RW2)",
}


@dataclasses.dataclass
class InputScan:
    """The top level of an input folder, sorted by name.

    ``images``: files to process; ``unsupported``: pictures in a format the stage cannot read, with the
    reason (they are reported as skipped inputs); ``ignored``: everything else that is not hidden
    (other files, sub-folders), with the reason.
    """

    images: list[Path]
    unsupported: list[tuple[Path, str]]
    ignored: list[tuple[str, str]]


def unsupported_reason(path: Path) -> str | None:
    """Why a picture with this extension is not read, or None when it is (or is not a picture at all)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS or suffix not in UNSUPPORTED_IMAGES:
        return None
    if suffix == ".avif":
        return "AVIF is not supported by this Pillow build (it lacks libavif): convert to JPEG/PNG"
    return f"{UNSUPPORTED_IMAGES[suffix]} is not supported: convert to JPEG/PNG"


def scan_inputs(input_dir: str | os.PathLike) -> InputScan:
    """Sort the top level of ``input_dir`` into images, unsupported pictures and ignored entries.

    Hidden entries (``.DS_Store``, ``.git``) are left out silently; sub-folders are not read.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input directory {str(root)!r} does not exist or is not a directory")
    images: list[Path] = []
    unsupported: list[tuple[Path, str]] = []
    ignored: list[tuple[str, str]] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            ignored.append((p.name, "a folder: only the top-level files of the input folder are read"))
        elif not p.is_file():
            ignored.append((p.name, "not a regular file (a broken link, a pipe or a device)"))
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        elif (reason := unsupported_reason(p)) is not None:
            unsupported.append((p, reason))
        else:
            ignored.append((p.name, f"not an image extension ({p.suffix or 'none'})"))
    return InputScan(images, unsupported, ignored)


def list_inputs(input_dir: str | os.PathLike) -> list[Path]:
    """The top-level image files of ``input_dir`` (by extension), sorted; sub-folders are ignored."""
    return scan_inputs(input_dir).images


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_file_bytes(size: int, max_bytes: int, section: str = "prep") -> None:
    """Refuse files above ``max_bytes`` before they are read; the message names ``section.max_file_bytes``."""
    if size > max_bytes:
        raise ImageLoadError(f"refused: the file is {size:,} bytes, above the limit of {max_bytes:,} "
                             f"({section}.max_file_bytes)")


def read_input(path: str | os.PathLike, max_bytes: int, section: str = "prep") -> bytes:
    """The whole file, read once, or ImageLoadError when it is above ``max_bytes``.

    The size is checked on the open file before reading, and the read stops one byte past the limit,
    so a file that grows in between is refused too. OSError (missing, unreadable) is the caller's.
    """
    with open(path, "rb") as f:
        check_file_bytes(os.fstat(f.fileno()).st_size, max_bytes, section)
        data = f.read(max_bytes + 1)
    check_file_bytes(len(data), max_bytes, section)
    return data


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB or single-channel uint8 array (OpenCV's encoder: several times faster than Pillow's)."""
    import cv2

    bgr = image[..., ::-1] if image.ndim == 3 else image  # OpenCV writes BGR; a mask has no channels to swap
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
