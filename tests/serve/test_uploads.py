"""Uploaded images: real PNG/JPEG/WebP bytes, broken and hostile files, limits as the right 4xx."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from fitad.serve.config import ServeConfig
from fitad.serve.errors import ApiError
from fitad.serve.uploads import decode_upload, decode_upload_image, sniff_type

CFG = ServeConfig()


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def halves(w: int = 120, h: int = 80) -> np.ndarray:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return arr


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny, valid-looking PNG whose header claims width x height RGB pixels (one compressed row of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * 64), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refused(data, content_type, config=CFG) -> ApiError:
    with pytest.raises(ApiError) as info:
        decode_upload(data, content_type, "image", config)
    assert info.value.field == "image" and "image" in info.value.message
    return info.value


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_real_images_decode_to_rgb(fmt, ctype):
    data = encode(halves(), fmt, **({"quality": 95} if fmt != "PNG" else {}))
    rgb = decode_upload(data, ctype, "image", CFG)
    assert rgb.shape == (80, 120, 3) and rgb.dtype == np.uint8
    assert rgb[40, 10, 0] > 200 and rgb[40, 10, 2] < 60       # red on the left
    assert rgb[40, 110, 2] > 200 and rgb[40, 110, 0] < 60     # blue on the right


def test_declared_type_may_be_wrong_among_images_and_parameters_are_ignored():
    png = encode(halves(), "PNG")
    assert decode_upload(png, "image/jpeg", "image", CFG).shape == (80, 120, 3)
    assert decode_upload(png, "IMAGE/PNG; charset=binary", "image", CFG).shape == (80, 120, 3)
    assert decode_upload(png, None, "image", CFG).shape == (80, 120, 3)
    assert decode_upload(png, "application/octet-stream", "image", CFG).shape == (80, 120, 3)


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored image rotated 90 degrees clockwise
    data = encode(halves(120, 80), "JPEG", quality=95, exif=exif.tobytes())
    rgb = decode_upload(data, "image/jpeg", "photo", CFG)
    assert rgb.shape == (120, 80, 3)                          # sides swapped
    assert rgb[10, 40, 0] > 200 and rgb[10, 40, 2] < 60       # stored left (red) is now on top
    assert rgb[110, 40, 2] > 200 and rgb[110, 40, 0] < 60


def test_transparent_cutout_keeps_its_alpha():
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[20:60, 20:60] = (0, 200, 0, 255)
    loaded = decode_upload_image(encode(rgba, "PNG"), "image/png", "product", CFG)
    assert loaded.alpha is not None and loaded.alpha[0, 0] == 0 and loaded.alpha[40, 40] == 255
    assert tuple(loaded.rgb[0, 0]) == (255, 255, 255)         # composited on white


def test_zero_bytes_is_400():
    err = refused(b"", "image/png")
    assert (err.status, err.code) == (400, "empty_upload")


def test_text_labelled_png_is_415():
    err = refused(b"hello, this is not a picture at all\n" * 4, "image/png")
    assert (err.status, err.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", ["text/plain", "image/gif", "application/pdf", "multipart/form-data"])
def test_other_content_types_are_415_even_with_image_bytes(ctype):
    err = refused(encode(halves(), "PNG"), ctype)
    assert err.status == 415 and "image/png" in err.message


def test_gif_bytes_are_415_whatever_the_label():
    err = refused(encode(halves(), "GIF"), "image/png")
    assert err.status == 415


def test_truncated_png_is_400():
    data = encode((np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8), "PNG")
    err = refused(data[: len(data) // 2], "image/png")
    assert (err.status, err.code) == (400, "invalid_image")


def test_corrupt_jpeg_header_is_400():
    err = refused(b"\xff\xd8\xff\xe0" + b"\x00" * 40, "image/jpeg")
    assert err.status == 400


def test_decompression_bomb_is_413_from_the_header_alone():
    data = bomb_png()
    assert len(data) < 200
    started = time.perf_counter()
    err = refused(data, "image/png")
    assert time.perf_counter() - started < 1.0               # 2.5 G pixels were never allocated
    assert (err.status, err.code) == (413, "payload_too_large")
    assert "50000x50000" in err.message and "serve.max_pixels" in err.message


def test_pixel_limit_follows_the_config():
    data = encode(halves(120, 80), "PNG")
    err = refused(data, "image/png", ServeConfig(max_pixels=9000))
    assert err.status == 413


def test_bytes_over_the_limit_are_413():
    data = encode((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8), "PNG")
    err = refused(data, "image/png", ServeConfig(max_body_bytes=1024))
    assert (err.status, err.code) == (413, "payload_too_large") and "serve.max_body_bytes" in err.message


def test_too_small_is_400_naming_the_limit():
    err = refused(encode(halves(120, 40), "PNG"), "image/png")
    assert err.status == 400 and "64" in err.message and "serve.min_image_side" in err.message


def test_sniff_type():
    assert sniff_type(encode(halves(), "PNG")) == "image/png"
    assert sniff_type(encode(halves(), "JPEG")) == "image/jpeg"
    assert sniff_type(encode(halves(), "WEBP")) == "image/webp"
    assert sniff_type(b"GIF89a....") is None and sniff_type(b"") is None


def test_a_file_field_sent_as_text_becomes_a_file_of_that_text_never_a_fetch():
    import asyncio

    from starlette.datastructures import UploadFile

    from fitad.serve.uploads import text_field_as_file

    url = "http://169.254.169.254/latest/meta-data/"
    as_file = asyncio.run(text_field_as_file(url))
    assert isinstance(as_file, UploadFile) and asyncio.run(as_file.read()) == url.encode()
    with pytest.raises(ApiError) as err:  # and it is then refused like any other non-image
        decode_upload_image(url.encode(), None, "image", ServeConfig())
    assert err.value.status in (400, 415)
    real = UploadFile(io.BytesIO(b"x"))
    assert asyncio.run(text_field_as_file(real)) is real
