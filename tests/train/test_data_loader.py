"""Training reads its images with the project's one loader (fitad.prep.io.load_image): same pixels as prep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fitad.prep.io import load_image as prep_load_image
from fitad.train.data import image_to_tensor, load_dataset, load_image


def _exif_rotated_jpeg(path: Path) -> None:
    img = Image.new("RGB", (80, 40), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 40))  # black band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored pixels rotated 90 degrees clockwise: 40 x 80, band on top
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())


def _mid_grey_16bit_png(path: Path) -> None:
    Image.fromarray(np.full((48, 64), 32768, np.uint16)).save(path, "PNG")


def _colour_keyed_rgb_png(path: Path) -> None:
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[12:36, 16:48] = (200, 30, 30)  # a red square; the black around it is the tRNS colour key
    Image.fromarray(arr).save(path, "PNG", transparency=(0, 0, 0))


def _colour_keyed_grey_png(path: Path) -> None:
    arr = np.zeros((48, 64), np.uint8)
    arr[12:36, 16:48] = 90
    Image.fromarray(arr).save(path, "PNG", transparency=0)


def _palette_keyed_png(path: Path) -> None:
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[12:36, 16:48] = (200, 30, 30)
    img = Image.fromarray(arr).quantize(4)
    img.save(path, "PNG", transparency=img.getpixel((0, 0)))


def _prep_tensor(path: Path) -> torch.Tensor:
    rgb = prep_load_image(path.read_bytes(), path.name).rgb
    return torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)


CASES = {
    # name: (writer, displayed size, (x, y, expected RGB) a pixel the old training loader got wrong)
    "exif.jpg": (_exif_rotated_jpeg, (40, 80), (20, 5, "dark")),
    "grey16.png": (_mid_grey_16bit_png, (64, 48), (5, 5, (128, 128, 128))),
    "keyed_rgb.png": (_colour_keyed_rgb_png, (64, 48), (2, 2, (255, 255, 255))),
    "keyed_grey.png": (_colour_keyed_grey_png, (64, 48), (2, 2, (255, 255, 255))),
    "keyed_palette.png": (_palette_keyed_png, (64, 48), (2, 2, (255, 255, 255))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_pixels_match_the_prep_loader(tmp_path, name):
    writer, size, (x, y, expected) = CASES[name]
    path = tmp_path / name
    writer(path)
    img = load_image(path, size)
    assert img.size == size
    got = img.getpixel((x, y))
    if expected == "dark":
        assert max(got) < 60, got  # the band EXIF says is on top
    else:
        assert all(abs(a - b) <= 1 for a, b in zip(got, expected)), (got, expected)
    train = image_to_tensor(img)
    assert torch.allclose(train, _prep_tensor(path), atol=1e-6)


def test_dataset_sizes_follow_exif_orientation(tmp_path):
    """Buckets and the upscale check use the displayed size, not the stored one."""
    images = tmp_path / "ds" / "images"
    images.mkdir(parents=True)
    _exif_rotated_jpeg(images / "tall.jpg")
    (images / "tall.txt").write_text("sks photo")
    ds = load_dataset(tmp_path / "ds", 40, allow_upscale=True, aspect_buckets=False)
    assert ds.examples[0].size == (40, 80)
    with pytest.raises(Exception, match="40x80 px is smaller"):
        load_dataset(tmp_path / "ds", 64)

