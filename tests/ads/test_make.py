"""make_ad on real photographs with the tiny renderer: sizes, kept pixels, overlay contrast, metadata, bad input.

Every kept-pixel check rebuilds the expectation on its own: the placement from the format's size (contain
scale, centring) or from the reported canvas box, the resampling with cv2 directly (area filter to shrink,
Lanczos to enlarge, as ``fitad.ads.formats.resize`` documents), and the masks by calling the detectors on
the photo (never by reading them out of the ad).
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from fitad.ads.make import AdError, make_ad
from fitad.ads.result import read_ad_metadata
from fitad.ads.subjects import SubjectError, detect_faces, face_mask, product_mask

from .conftest import ad_config, encode

# The spec: platform sizes (width, height).
SIZES = {"instagram_square": (1080, 1080), "instagram_portrait": (1080, 1350),
         "instagram_portrait_3x4": (1080, 1440), "instagram_story": (1080, 1920), "story": (1080, 1920),
         "facebook_link": (1200, 630), "facebook": (1200, 630), "kakao_square": (720, 720),
         "kakao_banner": (800, 400), "1200x800": (1200, 800)}
ASTRONAUT_NOSE = (225, 122)


# ---------------------------------------------------------------- independent references

def _resample(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    if (width, height) == (photo.shape[1], photo.shape[0]):
        return photo
    shrink = width * height < photo.shape[0] * photo.shape[1]
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def _paste(canvas_size, photo, mask, origin):
    """(rgb, keep) at canvas size: ``photo`` and ``mask`` put at ``origin``, cut at the edges."""
    W, H = canvas_size
    ox, oy = origin
    sh, sw = mask.shape
    rgb, keep = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), bool)
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(W, ox + sw), min(H, oy + sh)
    rgb[y0:y1, x0:x1] = photo[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    keep[y0:y1, x0:x1] = mask[y0 - oy:y1 - oy, x0 - ox:x1 - ox] > 0
    return rgb, keep


def expected_product(result, photo: np.ndarray, config, mask: np.ndarray | None = None):
    """The product as it must appear on the canvas: (rgb, keep mask), from the reported scale and box."""
    info = result.metadata["kept"]["product"]
    W, H = result.metadata["size"]
    h, w = photo.shape[:2]
    scale = info["scale"]
    assert 0 < scale <= 1.0                                      # never enlarged (max_product_upscale 1)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    x0, y0, x1, y1 = info["canvas_box"]
    ox = x0 if x0 > 0 else x1 - sw
    oy = y0 if y0 > 0 else y1 - sh
    assert (max(0, ox), max(0, oy), min(W, ox + sw), min(H, oy + sh)) == (x0, y0, x1, y1)
    if mask is None:
        mask = product_mask(photo, config).mask
    mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
    rgb, keep = _paste((W, H), _resample(photo, sw, sh), mask, (ox, oy))
    assert keep.sum() == info["kept_pixels"]
    return rgb, keep


def expected_faces(result, photo: np.ndarray, config, nose=None):
    """The person photo contained in and centred on the canvas, and its face ellipses: (rgb, keep)."""
    W, H = result.metadata["size"]
    h, w = photo.shape[:2]
    s = min(W / w, H / h)
    sw, sh = round(w * s), round(h * s)
    origin = ((W - sw) // 2, (H - sh) // 2)
    boxes, _ = detect_faces(photo, config)
    assert boxes
    mask = cv2.resize(face_mask(photo.shape[:2], boxes, config.face_margin), (sw, sh),
                      interpolation=cv2.INTER_NEAREST)
    rgb, keep = _paste((W, H), _resample(photo, sw, sh), mask, origin)
    if nose is not None:                       # the reported face box lies where the nose lands on the canvas
        cx, cy = origin[0] + nose[0] * s, origin[1] + nose[1] * s
        assert any(b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in result.metadata["kept"]["faces"]["faces"])
    return rgb, keep


def assert_kept(ad: np.ndarray, rgb: np.ndarray, keep: np.ndarray, exclude: np.ndarray | None = None):
    keep = keep & ~exclude if exclude is not None else keep
    assert keep.sum() > 1000
    mismatch = (ad[keep] != rgb[keep]).any(axis=1)
    assert not mismatch.any(), f"{mismatch.sum()} of {keep.sum()} kept pixels differ"


def assert_repainted(ad: np.ndarray, rgb: np.ndarray, keep: np.ndarray, covered: np.ndarray):
    """Beyond the kept area (and its feathered rim) the photo was repainted, not passed through."""
    around = cv2.dilate(keep.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    region = covered & ~around
    assert region.sum() > 1000
    assert (ad[region] == rgb[region]).all(axis=1).mean() < 0.2


def _srgb_linear(values):
    c = np.asarray(values, dtype=np.float64) / 255.0
    return np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def wcag_contrast(text_rgb, pixels):
    """WCAG 2.x contrast ratio between one colour and each of ``pixels`` (N x 3)."""
    weights = np.array([0.2126, 0.7152, 0.0722])
    lt = _srgb_linear(text_rgb) @ weights
    lp = _srgb_linear(pixels) @ weights
    return (np.maximum(lt, lp) + 0.05) / (np.minimum(lt, lp) + 0.05)


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def product_ad(renderer, coffee):
    return make_ad("product", ad_config(), renderer, image=coffee, prompt="라떼 한 잔", seed=3,
                   shop_name="Cafe Moon", offer="1+1")


# ---------------------------------------------------------------- sizes and kept pixels

@pytest.mark.parametrize("fmt", ["instagram_square", "instagram_portrait", "instagram_portrait_3x4", "story",
                                 "facebook", "kakao_square", "kakao_banner", "1200x800"])
def test_txt2img_size_is_the_formats(renderer, fmt):
    result = make_ad("txt2img", ad_config(format=fmt), renderer, seed=1)
    W, H = SIZES[fmt]
    assert result.image.shape == (H, W, 3) and result.image.dtype == np.uint8
    assert result.metadata["size"] == [W, H]
    assert (result.metadata["format"]["width"], result.metadata["format"]["height"]) == (W, H)
    rw, rh = result.metadata["render_size"]
    assert rw % 8 == 0 and rh % 8 == 0 and abs(rw / rh - W / H) < 0.2   # rendered in the format's aspect
    assert result.image.std() > 1                                       # a picture, not a flat fill


@pytest.mark.parametrize("mode, fmt", [("product", "story"), ("product", "facebook"), ("person", "story"),
                                       ("person", "kakao_banner"), ("advanced", "facebook_link"),
                                       ("advanced", "instagram_square")])
def test_kept_subjects_in_each_format(renderer, coffee, astronaut, mode, fmt):
    config = ad_config(format=fmt)
    W, H = SIZES[fmt]
    if mode == "product":
        result = make_ad(mode, config, renderer, image=coffee, seed=2)
    else:
        result = make_ad(mode, config, renderer, image=astronaut, seed=2,
                         product_image=coffee if mode == "advanced" else None)
    assert result.image.shape == (H, W, 3) and result.metadata["size"] == [W, H]
    assert result.metadata["mode"] == mode
    exclude = None
    if mode in ("product", "advanced"):
        rgb, keep = expected_product(result, coffee, config)
        assert_kept(result.image, rgb, keep)
        exclude = cv2.dilate(keep.astype(np.uint8), np.ones((2 * config.feather_px + 5,) * 2, np.uint8)) > 0
    if mode in ("person", "advanced"):
        rgb, keep = expected_faces(result, astronaut, config, nose=ASTRONAUT_NOSE)
        assert_kept(result.image, rgb, keep, exclude)


def test_product_pixels_are_the_photos(product_ad, coffee):
    """At scale 1 the kept product is the photo's own pixels, where the photo's own mask says."""
    info = product_ad.metadata["kept"]["product"]
    assert info["scale"] == 1.0
    x0, y0, x1, y1 = info["canvas_box"]
    assert (x1 - x0, y1 - y0) == (600, 400)                     # the whole photo, unscaled, on the canvas
    mask = product_mask(coffee, ad_config()).mask > 0
    region = product_ad.image[y0:y1, x0:x1]
    np.testing.assert_array_equal(region[mask], coffee[mask])
    ys, xs = np.nonzero(mask)
    assert info["photo_box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the table around the cup was repainted
    table = ~(cv2.dilate(mask.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0)
    assert (region[table] == coffee[table]).all(axis=1).mean() < 0.2
    assert info["intrusion"]["changed_share"] >= 0 and info["kept_pixels"] == mask.sum()


def test_large_photo_is_shrunk_with_the_area_filter(renderer, coffee, tmp_path):
    big = cv2.resize(coffee, (1500, 1000), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.png"
    path.write_bytes(encode(big))
    config = ad_config()
    result = make_ad("product", config, renderer, image=path, seed=4)
    assert result.image.shape == (1080, 1080, 3)
    info = result.metadata["kept"]["product"]
    assert info["scale"] < 0.9                                   # it had to be downscaled
    rgb, keep = expected_product(result, big, config)
    assert_kept(result.image, rgb, keep)
    # ... and the area filter is what makes it match: another resampler does not
    sw = round(1500 * info["scale"])
    sh = round(1000 * info["scale"])
    linear, _ = _paste((1080, 1080), cv2.resize(big, (sw, sh), interpolation=cv2.INTER_LINEAR),
                       np.zeros((sh, sw), np.uint8), info["canvas_box"][:2])
    assert (result.image[keep] != linear[keep]).any(axis=1).mean() > 0.05


def test_transparent_cutout_uses_its_alpha(renderer, coffee):
    alpha = np.zeros(coffee.shape[:2], np.uint8)
    cv2.ellipse(alpha, (300, 190), (140, 110), 0, 0, 360, 255, -1)
    rgba = np.dstack([coffee, alpha])                            # the table is still there, transparent
    config = ad_config()
    result = make_ad("product", config, renderer, image=encode(rgba), seed=5)
    info = result.metadata["kept"]["product"]
    assert info["segmenter"] == "alpha channel"
    assert info["photo_box"] == [160, 80, 441, 301]
    assert info["scale"] == 1.0
    assert any("transparent" in note for note in result.metadata["input"]["notes"])
    rgb, keep = expected_product(result, coffee, config, mask=alpha)
    assert_kept(result.image, rgb, keep)
    # the transparent part of the file (the table) is not passed through: it is repainted
    x0, y0, x1, y1 = info["canvas_box"]
    covered = np.zeros_like(keep)
    covered[y0:y1, x0:x1] = True
    assert_repainted(result.image, rgb, keep, covered)


def test_person_face_pixels_are_the_photos(renderer, astronaut):
    config = ad_config()
    result = make_ad("person", config, renderer, image=astronaut, seed=6)
    assert result.image.shape == (1080, 1080, 3)
    faces = result.metadata["kept"]["faces"]
    assert faces["scale"] == pytest.approx(1080 / 512, abs=1e-4)
    assert len(faces["faces"]) == 1
    rgb, keep = expected_faces(result, astronaut, config, nose=ASTRONAUT_NOSE)
    assert_kept(result.image, rgb, keep)
    # the whole reported face box is among the kept pixels
    x0, y0, x1, y1 = faces["faces"][0]
    inner = np.zeros_like(keep)
    inner[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = True
    assert keep[inner].all()
    assert_repainted(result.image, rgb, keep, np.ones_like(keep))


def test_advanced_keeps_face_and_product(renderer, astronaut, coffee):
    config = ad_config()
    result = make_ad("advanced", config, renderer, image=astronaut, product_image=coffee, seed=7)
    kept = result.metadata["kept"]
    assert set(kept) >= {"faces", "product"}
    p_rgb, p_keep = expected_product(result, coffee, config)
    f_rgb, f_keep = expected_faces(result, astronaut, config, nose=ASTRONAUT_NOSE)
    assert_kept(result.image, p_rgb, p_keep)
    near_product = cv2.dilate(p_keep.astype(np.uint8), np.ones((2 * config.feather_px + 5,) * 2, np.uint8)) > 0
    assert_kept(result.image, f_rgb, f_keep, near_product)
    # the product goes to the side away from the face
    face_cx = np.mean([(b[0] + b[2]) / 2 for b in kept["faces"]["faces"]])
    product_cx = np.nonzero(p_keep)[1].mean()
    assert (product_cx - 540) * (face_cx - 540) <= 0
    assert_repainted(result.image, f_rgb, f_keep | p_keep, np.ones_like(f_keep))


# ---------------------------------------------------------------- headline, determinism

def test_headline_contrast_measured_again(renderer):
    config = ad_config(format="story")
    plain = make_ad("txt2img", config, renderer, seed=11)
    again = make_ad("txt2img", config, renderer, seed=11)
    np.testing.assert_array_equal(plain.image, again.image)      # same seed, same base image
    texted = make_ad("txt2img", config, renderer, seed=11, headline="Fresh coffee, baked daily",
                     subcopy="Open 8 am to 10 pm")
    report = texted.metadata["overlay"]
    assert report["contrast"] >= 4.5
    changed = (texted.image != plain.image).any(axis=2)
    assert changed.sum() > 2000
    ys, xs = np.nonzero(changed)
    bx0, by0, bx1, by1 = report["box"]
    assert bx0 <= xs.min() and xs.max() < bx1 and by0 <= ys.min() and ys.max() < by1
    assert ys.min() >= 250 and ys.max() < 1920 - 340              # clear of the story UI
    # the glyphs: pixels in exactly the reported text colour that the overlay drew
    text = np.array(_hex(report["text_color"]))
    glyph = changed & (texted.image == text).all(axis=2)
    assert glyph.sum() > 1000
    # what surrounds them, past the anti-aliased edge (3..6 px out): backdrop, outline or the image
    g = glyph.astype(np.uint8)
    ring = (cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))) > 0) & \
        ~(cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0)
    ratios = wcag_contrast(text, texted.image[ring].reshape(-1, 3))
    assert np.percentile(ratios, 5) >= 4.5, (np.percentile(ratios, 5), report)
    if report["backdrop"] is None:                                # text straight on the picture
        behind = wcag_contrast(text, plain.image[glyph].reshape(-1, 3))
        assert np.percentile(behind, 5) >= 4.5


def test_same_request_same_image_other_seed_other_image(renderer, astronaut):
    config = ad_config()
    first = make_ad("person", config, renderer, image=astronaut, seed=21, prompt="spring outfit")
    second = make_ad("person", config, renderer, image=astronaut, seed=21, prompt="spring outfit")
    other = make_ad("person", config, renderer, image=astronaut, seed=22, prompt="spring outfit")
    np.testing.assert_array_equal(first.image, second.image)
    assert (first.image != other.image).any(axis=2).mean() > 0.2
    # the face is the photo's whatever the seed
    keep = np.zeros(first.image.shape[:2], bool)
    x0, y0, x1, y1 = first.metadata["kept"]["faces"]["faces"][0]
    keep[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(first.image[keep], other.image[keep])
    t1 = make_ad("txt2img", config, renderer, seed=5)
    t2 = make_ad("txt2img", config, renderer, seed=5)
    t3 = make_ad("txt2img", config, renderer, seed=6)
    np.testing.assert_array_equal(t1.image, t2.image)
    assert (t1.image != t3.image).any()


def test_product_ad_is_reproducible(renderer, coffee, product_ad):
    again = make_ad("product", ad_config(), renderer, image=coffee, prompt="라떼 한 잔", seed=3,
                    shop_name="Cafe Moon", offer="1+1")
    np.testing.assert_array_equal(again.image, product_ad.image)
    assert again.metadata["kept"]["product"] == product_ad.metadata["kept"]["product"]
    assert again.copy == product_ad.copy


def test_compose_fits_the_photo_without_a_model(coffee):
    result = make_ad("compose", ad_config(format="kakao_banner"), None, image=coffee, headline="Grand opening")
    assert result.image.shape == (400, 800, 3)
    assert result.metadata["mode"] == "compose" and "base_model" not in result.metadata
    assert result.metadata["overlay"]["contrast"] >= 4.5


# ---------------------------------------------------------------- metadata, saving, copy

def test_metadata_with_lora(renderer, tiny_lora):
    steps_seen = []
    result = make_ad("txt2img", ad_config(format="4:5", industry="bakery"), renderer, seed=9,
                     prompt="a croissant on a plate", lora=str(tiny_lora), lora_scale=0.8,
                     progress=lambda p: steps_seen.append((p.step, p.total)))
    meta = result.metadata
    assert meta["mode"] == "txt2img" and meta["seed"] == 9 and meta["industry"] == "bakery"
    assert meta["format"]["key"] == "instagram_portrait" and meta["size"] == [1080, 1350]
    assert meta["base_model"] == renderer.config.base_model and meta["family"] == "sd15"
    assert meta["steps"] == 2
    lora = meta["lora"]
    assert lora["ref"] == str(tiny_lora) and lora["scale"] == 0.8 and lora["family"] == "sd15"
    assert lora["trigger"] == "sks" and lora["rank"] == 4
    prompt = meta["prompt"]
    used = prompt["used"]
    assert used.split(",")[0].strip().startswith("sks")         # the trigger leads the prompt
    assert "croissant" in used
    assert isinstance(prompt["dropped"], list) and isinstance(prompt["negative"], str)
    tokenizer = renderer._base().tokenizer
    assert len(tokenizer(used).input_ids) <= 77 and prompt["budget"] == 77
    for stage in ("load", "prompt", "render", "copy"):
        assert meta["timings"][stage] >= 0
    assert steps_seen and steps_seen[-1][0] == steps_seen[-1][1]
    # the adapter is really applied
    without = make_ad("txt2img", ad_config(format="4:5", industry="bakery"), renderer, seed=9,
                      prompt="a croissant on a plate")
    assert without.metadata["lora"] is None
    assert (result.image != without.image).any()


def test_product_metadata(product_ad, renderer):
    meta = product_ad.metadata
    assert meta["mode"] == "product" and meta["seed"] == 3 and meta["format"]["key"] == "instagram_square"
    assert meta["base_model"] == renderer.config.inpaint_model
    assert "Inpaint" in meta["pipeline"] and meta["lora"] is None
    assert meta["input"]["size"] == [600, 400]
    assert "latte" in meta["prompt"]["used"]                      # the Korean request, translated
    assert isinstance(meta["prompt"]["dropped"], list)
    assert set(meta["timings"]) >= {"load", "prompt", "segment", "render", "composite", "copy"}
    assert all(v >= 0 for v in meta["timings"].values())
    assert meta["kept"]["product"]["segmenter"].startswith("opencv")


def test_save_round_trip(product_ad, tmp_path):
    png, js = product_ad.save(tmp_path / "out" / "ad.jpg")
    assert png == tmp_path / "out" / "ad.png" and js == tmp_path / "out" / "ad.json"
    with Image.open(png) as img:
        assert img.format == "PNG"
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), product_ad.image)
        parameters = img.text["parameters"]
    meta = read_ad_metadata(png)
    expected = json.loads(json.dumps(product_ad.metadata))
    assert meta.pop("copy") == product_ad.copy
    assert meta.pop("parameters") == parameters
    assert meta == expected
    assert product_ad.metadata["prompt"]["used"] in parameters and "Seed: 3" in parameters
    on_disk = json.loads(js.read_text(encoding="utf-8"))
    assert on_disk == {**expected, "copy": product_ad.copy, "image": "ad.png"}
    assert not [p for p in png.parent.iterdir() if p.name not in ("ad.png", "ad.json")]   # no temp files left


def test_copy_has_at_most_30_hashtags(product_ad):
    copy = product_ad.copy
    tags = copy["hashtags"]
    assert 0 < len(tags) <= 30 and len(set(tags)) == len(tags)
    assert all(t.startswith("#") and " " not in t for t in tags)
    assert tags[0] == "#CafeMoon"
    assert all(t in copy["caption"] for t in tags)
    assert copy["lang"] == "ko" and copy["industry"] == "cafe"


# ---------------------------------------------------------------- inputs that must work

def test_16bit_grayscale_png(renderer, coffee):
    gray = np.asarray(Image.fromarray(coffee).convert("L"))
    data = encode(gray.astype(np.uint16) * 257)                   # 8-bit values spread over 16 bits
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    config = ad_config()
    result = make_ad("product", config, renderer, image=data, seed=1)
    assert result.image.shape == (1080, 1080, 3)
    assert any("16-bit" in n for n in result.metadata["input"]["notes"])
    gray3 = np.repeat(gray[..., None], 3, axis=2)
    rgb, keep = expected_product(result, gray3, config)
    assert_kept(result.image, rgb, keep)


def test_cmyk_jpeg(renderer, coffee):
    data = encode(coffee, "JPEG", mode="CMYK", quality=95)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.abs(decoded.astype(int) - coffee).mean() < 8      # still the coffee photo
    config = ad_config(format="facebook")
    result = make_ad("product", config, renderer, image=data, seed=1)
    assert result.image.shape == (630, 1200, 3)
    assert result.metadata["input"]["format"] == "JPEG"
    assert any("CMYK" in n for n in result.metadata["input"]["notes"])
    rgb, keep = expected_product(result, decoded, config)
    assert_kept(result.image, rgb, keep)


def test_exif_rotated_jpeg_person(renderer, astronaut):
    upright = np.ascontiguousarray(astronaut[:, 40:460])          # 420 wide, 512 tall
    stored = np.ascontiguousarray(np.rot90(upright, 1))           # what the camera wrote: lying on its side
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6                                              # "rotate 90 degrees clockwise to view"
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    config = ad_config()
    result = make_ad("person", config, renderer, image=data, seed=3)
    assert result.image.shape == (1080, 1080, 3)
    assert result.metadata["input"]["size"] == [420, 512]
    assert any("EXIF orientation 6" in n for n in result.metadata["input"]["notes"])
    # decode independently and turn it upright by hand: the face is found where it is upright
    raw = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert raw.shape == (420, 512, 3)
    turned = np.ascontiguousarray(np.rot90(raw, -1))
    rgb, keep = expected_faces(result, turned, config, nose=(ASTRONAUT_NOSE[0] - 40, ASTRONAUT_NOSE[1]))
    assert_kept(result.image, rgb, keep)


# ---------------------------------------------------------------- bad input

def _truncated_png(photo) -> bytes:
    data = encode(photo)
    return data[: len(data) // 2]


@pytest.mark.parametrize("case", ["empty", "corrupt", "truncated", "tiny", "float", "missing", "bytes_limit",
                                  "pixels_bytes", "pixels_path"])
def test_bad_image_names_the_field(renderer, render_calls, coffee, tmp_path, case):
    config = ad_config()
    expect = {"empty": "empty", "corrupt": "not an image", "truncated": "truncated", "tiny": "too small",
              "float": "uint8", "missing": "no such file", "bytes_limit": "ads.max_bytes",
              "pixels_bytes": "ads.max_pixels", "pixels_path": "ads.max_pixels"}[case]
    if case == "empty":
        image = b""
    elif case == "corrupt":
        image = b"this is not an image, just some text " * 20
    elif case == "truncated":
        image = _truncated_png(coffee)
    elif case == "tiny":
        image = np.zeros((32, 200, 3), np.uint8)
    elif case == "float":
        image = coffee.astype(np.float32)
    elif case == "missing":
        image = tmp_path / "nope.png"
    elif case == "bytes_limit":
        config = ad_config(max_bytes=4096)
        image = encode(coffee)
    else:
        config = ad_config(max_pixels=100_000)                    # coffee is 240,000 pixels
        image = encode(coffee)
        if case == "pixels_path":
            image_path = tmp_path / "coffee.png"
            image_path.write_bytes(image)
            image = str(image_path)
    with pytest.raises(ValueError) as info:
        make_ad("product", config, renderer, image=image)
    message = str(info.value)
    assert message.startswith("image:"), message
    assert expect in message, message
    assert render_calls == []


def test_array_above_pixel_limit_is_refused(renderer, render_calls, coffee):
    with pytest.raises(ValueError, match=r"^image:.*max_pixels"):
        make_ad("product", ad_config(max_pixels=100_000), renderer, image=coffee)
    assert render_calls == []


def test_bad_product_image_names_its_field(renderer, render_calls, astronaut):
    with pytest.raises(ValueError, match=r"^product_image:"):
        make_ad("advanced", ad_config(), renderer, image=astronaut, product_image=b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SubjectError, match=r"^product_image: no product found"):
        make_ad("advanced", ad_config(), renderer, image=astronaut,
                product_image=np.full((200, 200, 3), 90, np.uint8))
    assert render_calls == []


def test_no_product_found(renderer, render_calls):
    flat = encode(np.full((300, 400, 3), (200, 30, 30), np.uint8))
    with pytest.raises(SubjectError, match=r"^image: no product found"):
        make_ad("product", ad_config(), renderer, image=flat)
    assert render_calls == []


@pytest.mark.parametrize("mode", ["person", "advanced"])
def test_no_face_found(renderer, render_calls, chelsea, coffee, mode):
    with pytest.raises(SubjectError) as info:
        make_ad(mode, ad_config(), renderer, image=chelsea, product_image=coffee)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("image:") and "no face" in str(info.value)
    assert render_calls == []


def test_unknown_format(renderer, render_calls, coffee):
    from fitad.ads.config import AdConfig
    from fitad.ads.formats import FormatError

    with pytest.raises(ValueError, match=r"ads\.format.*tiktok.*instagram_square"):
        AdConfig(format="tiktok")
    config = ad_config()
    config.format = "tiktok"                                      # changed after validation
    with pytest.raises(FormatError, match=r"tiktok.*instagram_story"):
        make_ad("product", config, renderer, image=coffee)
    assert render_calls == []


@pytest.mark.parametrize("mode", ["txt2img", "product"])
def test_unknown_industry(renderer, render_calls, coffee, mode):
    with pytest.raises(ValueError, match=r"industry 'spaceship' is not known.*cafe"):
        make_ad(mode, ad_config(industry="spaceship"), renderer, image=coffee)
    assert render_calls == []


def test_headline_too_long_is_an_overlay_error(renderer, astronaut):
    from fitad.ads.overlay import OverlayError

    with pytest.raises(OverlayError, match=r"^headline:"):
        make_ad("person", ad_config(), renderer, image=astronaut, headline="longwords " * 300)


def test_headline_too_long_fails_before_rendering(renderer, render_calls, astronaut):
    from fitad.ads.overlay import OverlayError

    with pytest.raises(OverlayError, match=r"^headline:"):
        make_ad("person", ad_config(), renderer, image=astronaut, headline="longwords " * 300)
    assert render_calls == []


def test_bad_overlay_field_fails_before_rendering(renderer, render_calls, astronaut):
    from fitad.ads.overlay import OverlayError

    with pytest.raises(OverlayError, match=r"^brand_colors\[0\]:"):
        make_ad("person", ad_config(), renderer, image=astronaut, headline="Hello", brand_colors=("red",))
    assert render_calls == []


def test_lora_of_the_wrong_family(renderer, tmp_path, tiny_models_root):
    from fitad import zoo
    from fitad.lora.load import LoraLoadError

    flux = zoo.build_tiny_lora(tmp_path / "flux-lora", family="flux", rank=4, seed=1, root=tiny_models_root)
    with pytest.raises(LoraLoadError, match="flux") as info:
        make_ad("txt2img", ad_config(), renderer, lora=str(flux))
    assert str(flux) in str(info.value)
    with pytest.raises(LoraLoadError, match="no such LoRA"):
        make_ad("txt2img", ad_config(), renderer, lora=str(tmp_path / "missing"))


@pytest.mark.parametrize("mode, kwargs, field", [
    ("video", {}, "mode"),
    ("product", {}, "image"),
    ("advanced", {"image": "PHOTO"}, "product_image"),
    ("person", {"image": "PHOTO", "renderer": None}, "renderer"),
])
def test_bad_request(renderer, render_calls, astronaut, mode, kwargs, field):
    kwargs = {k: (astronaut if v == "PHOTO" else v) for k, v in kwargs.items()}
    use = kwargs.pop("renderer", renderer)
    with pytest.raises(AdError, match=field):
        make_ad(mode, ad_config(), use, **kwargs)
    assert render_calls == []


def test_advanced_product_never_covers_the_face(renderer, astronaut, coffee):
    """A face low in the frame meets the product's spot: the product goes behind it, the face stays exact."""
    close = cv2.resize(np.ascontiguousarray(astronaut[20:300, 90:370]), (512, 512), interpolation=cv2.INTER_AREA)
    photo = np.ascontiguousarray(np.vstack([np.repeat(close[:1], 300, axis=0), close]))  # face pushed down
    config = ad_config()
    result = make_ad("advanced", config, renderer, image=photo, product_image=coffee, seed=3)
    kept = result.metadata["kept"]
    assert kept["product"]["hidden_behind_face_px"] > 0          # the two did overlap
    f_rgb, f_keep = expected_faces(result, photo, config)
    assert_kept(result.image, f_rgb, f_keep)                     # every face pixel, none excluded
    assert kept["faces"]["kept_pixels"] == int(f_keep.sum())


def test_product_rim_fades_from_its_own_edge_colours(renderer, coffee):
    """Outside the kept mask the rim blends product-edge colours into the background, and only within feather_px."""
    sharp = make_ad("product", ad_config(feather_px=0), renderer, image=coffee, seed=5)
    soft = make_ad("product", ad_config(feather_px=8), renderer, image=coffee, seed=5)
    rgb, keep = expected_product(soft, coffee, ad_config(feather_px=8))
    assert_kept(soft.image, rgb, keep)
    distance = cv2.distanceTransform(np.where(keep, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    rim = (distance > 0) & (distance <= 8)
    beyond = distance > 12
    assert (soft.image[rim] != sharp.image[rim]).any(axis=1).mean() > 0.5
    # beyond the rim only the render's start image differed (the rim's colours): a few levels at most
    assert np.abs(soft.image[beyond].astype(int) - sharp.image[beyond]).max() <= 4


def test_soft_alpha_edge_is_not_pasted_as_a_white_fringe(renderer, coffee):
    """An anti-aliased cut-out: only opaque pixels are kept exactly; the half-transparent rim is not white."""
    h, w = coffee.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((150 - radius) * 255 / 10, 0, 255).astype(np.uint8)  # opaque disc, 10 px soft edge
    rgba = np.dstack([coffee, alpha])
    result = make_ad("product", ad_config(feather_px=4), renderer, image=encode(rgba, "PNG", "RGBA"), seed=2)
    info = result.metadata["kept"]["product"]
    assert info["segmenter"] == "alpha channel"
    assert info["kept_pixels"] == int((alpha >= 250).sum())
    x0, y0 = info["canvas_box"][:2]
    soft = (alpha > 0) & (alpha < 250)
    ring = result.image[y0:y0 + h, x0:x0 + w][soft]
    assert (ring.min(axis=1) > 245).mean() < 0.05                # no white fringe where the photo was see-through
