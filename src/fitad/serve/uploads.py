"""Uploaded images: checked against the service's limits, then decoded by the project's one image loader.

:func:`decode_upload` refuses, in this order and each as an :class:`~fitad.serve.errors.ApiError` naming the
form field:

* empty data (400 ``empty_upload``) or more than ``serve.max_body_bytes`` (413 ``payload_too_large``);
* a declared content type other than PNG, JPEG or WebP (415), or bytes that are none of those whatever the
  declared type says (415; the bytes decide: a PNG declared as JPEG is fine, text declared as PNG is not);
  no declared type, or ``application/octet-stream``, leaves the decision to the bytes;
* more than ``serve.max_pixels`` pixels, read from the header before any pixel is decoded (413: a
  decompression bomb costs nothing);
* a truncated or corrupt file (400 ``invalid_image``), or a side below ``serve.min_image_side`` (400).

Decoding is :func:`fitad.images.load_image` (EXIF rotation applied, 16-bit / palette / CMYK / alpha
normalised to 8-bit RGB).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fitad.images import ImageLoadError, LoadedImage, check_min_side, check_pixels, load_image
from fitad.serve.errors import ApiError

__all__ = ["ALLOWED_TYPES", "decode_upload", "decode_upload_image", "sniff_type", "text_field_as_file"]

ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp")
_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_UNDECLARED = ("", "application/octet-stream")
_SECTION = "serve"


def sniff_type(data: bytes) -> str | None:
    """``image/png``, ``image/jpeg`` or ``image/webp`` from the file's magic bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _declared(content_type: str | None) -> str:
    main = (content_type or "").split(";", 1)[0].strip().lower()
    return _TYPE_ALIASES.get(main, main)


def _header_size(data: bytes, field: str) -> tuple[int, int]:
    """(width, height) from the header alone, through the image loader's opener (no pixel decoded)."""
    from fitad.images import _open  # the loader's own header reader: one way of opening images

    try:
        with _open(data, field) as img:
            return img.size
    except ImageLoadError as exc:
        raise ApiError(400, "invalid_image", f"{field}: {exc}", field) from None


def decode_upload_image(data: bytes, content_type: str | None, field: str, config: Any) -> LoadedImage:
    """:func:`decode_upload` with the loader's whole result: RGB, the alpha channel of a cut-out, notes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ApiError(400, "invalid_image", f"{field}: expected an uploaded file", field)
    data = bytes(data)
    if not data:
        raise ApiError(400, "empty_upload", f"{field}: the uploaded file is empty (0 bytes)", field)
    if len(data) > config.max_body_bytes:
        raise ApiError(413, "payload_too_large",
                       f"{field}: the uploaded file is {len(data):,} bytes, above the limit of "
                       f"{config.max_body_bytes:,} bytes (serve.max_body_bytes)", field)
    declared = _declared(content_type)
    allowed = ", ".join(ALLOWED_TYPES)
    if declared not in _UNDECLARED and declared not in ALLOWED_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"{field}: content type {declared!r} is not accepted; send {allowed}", field)
    actual = sniff_type(data)
    if actual is None:
        said = f"declared as {declared}" if declared not in _UNDECLARED else "sent"
        raise ApiError(415, "unsupported_media_type",
                       f"{field}: the file {said} is not a PNG, JPEG or WebP image (its first bytes match none "
                       "of them)", field)
    width, height = _header_size(data, field)
    try:
        check_pixels(width, height, config.max_pixels, _SECTION)
    except ImageLoadError as exc:
        raise ApiError(413, "payload_too_large", f"{field}: {exc}", field) from None
    try:
        # min_side 1 here: the side check below runs on the displayed (EXIF-rotated) size as its own 400
        loaded = load_image(data, field, max_pixels=config.max_pixels, min_side=1, section=_SECTION)
    except ImageLoadError as exc:
        raise ApiError(400, "invalid_image", f"{field}: {exc}", field) from None
    try:
        check_min_side(loaded.rgb.shape[1], loaded.rgb.shape[0], config.min_image_side, _SECTION)
    except ImageLoadError as exc:
        raise ApiError(400, "invalid_image", f"{field}: image {exc}", field) from None
    return loaded


def decode_upload(data: bytes, content_type: str | None, field: str, config: Any) -> np.ndarray:
    """An uploaded image as H x W x 3 uint8 RGB (EXIF rotation applied), or ApiError naming ``field``."""
    return decode_upload_image(data, content_type, field, config).rgb


async def text_field_as_file(value: Any) -> Any:
    """A multipart file field that arrived as plain text becomes a file holding that text, so it is refused as a
    non-image like any other; BentoML's default would fetch it when it looks like a URL (server-side request
    forgery). Installed as BentoML's ``MultipartSerde.ensure_file`` by the service."""
    import io

    from starlette.datastructures import UploadFile

    if isinstance(value, UploadFile):
        return value
    return UploadFile(io.BytesIO(str(value).encode("utf-8", "replace")))
