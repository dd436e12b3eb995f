import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fitad.prep.io import ImageLoadError, list_inputs, load_image


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def gradient(w=64, h=48) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w)[None]
    arr[..., 1] = np.linspace(0, 255, h)[:, None]
    arr[..., 2] = 128
    return Image.fromarray(arr)


def test_zero_byte_file():
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(b"", "a.png")


def test_not_an_image_with_image_extension():
    with pytest.raises(ImageLoadError, match="not an image.*fake.jpg"):
        load_image(b"this is a text file, not a JPEG\n" * 4, "fake.jpg")


@pytest.mark.parametrize("encode", [png_bytes, jpeg_bytes])
def test_truncated_files_are_refused(encode):
    data = encode(gradient(256, 256))
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2], "half")


def test_decompression_bomb_refused_from_header():
    # A valid PNG header claiming 30000 x 30000 pixels: refused before any pixel is decoded.
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(ImageLoadError, match="refused: 30000x30000.*prep.max_pixels"):
        load_image(data, "bomb.png", max_pixels=64_000_000)


def test_pixel_limit_is_configurable():
    data = png_bytes(gradient(100, 100))
    with pytest.raises(ImageLoadError, match="limit of 5,000"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_too_small_image():
    with pytest.raises(ImageLoadError, match="too small: 20x20"):
        load_image(png_bytes(gradient(20, 20)), min_side=32)


def test_16bit_grayscale_is_scaled():
    arr = np.full((40, 40), 65535, np.uint16)
    arr[:, :20] = 0
    img = Image.fromarray(arr)
    loaded = load_image(png_bytes(img))
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (40, 40, 3)
    assert loaded.rgb[0, 30].tolist() == [255, 255, 255] and loaded.rgb[0, 5].tolist() == [0, 0, 0]
    assert any("16-bit" in n for n in loaded.notes)


def test_grayscale_palette_cmyk_become_rgb():
    base = gradient()
    for img, note in [(base.convert("L"), "grayscale"), (base.convert("P"), "palette"),
                      (base.convert("CMYK"), "CMYK")]:
        data = jpeg_bytes(img) if img.mode == "CMYK" else png_bytes(img)
        loaded = load_image(data)
        assert loaded.rgb.shape == (48, 64, 3), note
        assert any(note in n for n in loaded.notes), (note, loaded.notes)


def test_rgba_is_composited_on_white():
    arr = np.zeros((40, 40, 4), np.uint8)
    arr[10:30, 10:30] = (200, 0, 0, 255)  # opaque red square, the rest fully transparent black
    loaded = load_image(png_bytes(Image.fromarray(arr, "RGBA")))
    assert loaded.rgb[0, 0].tolist() == [255, 255, 255]
    assert loaded.rgb[20, 20].tolist() == [200, 0, 0]
    assert any("transparent" in n for n in loaded.notes)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (80, 40), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 40))  # black band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    loaded = load_image(jpeg_bytes(img, exif=exif.tobytes()))
    assert loaded.size == (40, 80)
    assert loaded.rgb[5, 20].mean() < 60 and loaded.rgb[75, 20].mean() > 200  # band is now on top
    assert any("EXIF orientation 6" in n for n in loaded.notes)


def test_list_inputs_ignores_json_masks_and_hidden(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp", "panel.json", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "m.png").write_bytes(b"x")
    assert [p.name for p in list_inputs(tmp_path)] == ["a.JPG", "b.png", "c.webp"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_inputs(tmp_path / "nope")



@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_colour_keyed_transparency_is_composited_on_white(mode):
    # tRNS on a truecolour or grey PNG: one colour (black here) means "transparent".
    arr = np.zeros((40, 40, 3), np.uint8)
    arr[10:30, 10:30] = (200, 40, 40)
    img = Image.fromarray(arr).convert(mode)
    loaded = load_image(png_bytes(img, transparency=(0, 0, 0) if mode == "RGB" else 0))
    assert loaded.rgb[0, 0].tolist() == [255, 255, 255]
    assert loaded.rgb[20, 20].tolist() == list(np.asarray(img.convert("RGB"))[20, 20])
    assert loaded.alpha is not None and loaded.alpha[0, 0] == 0 and loaded.alpha[20, 20] == 255
    assert any("transparent" in n for n in loaded.notes)


def test_dark_16bit_grayscale_keeps_its_scale():
    # 16-bit values all below 256 are still 16-bit data: 200/65535 is nearly black, not 200/255.
    loaded = load_image(png_bytes(Image.fromarray(np.full((40, 40), 200, np.uint16))))
    assert loaded.rgb[0, 0].tolist() == [1, 1, 1]
    mid = load_image(png_bytes(Image.fromarray(np.full((40, 40), 32768, np.uint16))))
    assert mid.rgb[0, 0].tolist() == [128, 128, 128]


def test_encode_png_keeps_rgb_and_single_channel_images_as_they_are():
    """Decoded by Pillow (another PNG reader): the same pixels, a mask not mirrored, colours not swapped."""
    from fitad.prep.io import encode_png

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    mask = np.zeros((5, 9), np.uint8)
    mask[1:3, :2] = 255  # left edge only: a mirrored mask would show it on the right
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(mask)))), mask)
