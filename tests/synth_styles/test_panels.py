"""Styled synthetic panels: the written ground truth agrees with the written pixels.

Every check reads the files back (PIL, OpenCV) and compares them with the JSON, rather than trusting
the generator's own bookkeeping.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fitad.synth_styles import synthesize_styles

BATCH = 30
TEXT_KINDS = {"bubble", "narration", "vertical", "sfx"}
BACKGROUNDS = {"city", "speedlines", "interior", "sky", "halftone", "plain"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("styles")
    paths = synthesize_styles(out, BATCH, seed=0, split="dev")
    return out, [json.loads(p.with_suffix(".json").read_text(encoding="utf-8")) for p in paths]


def _image(folder: Path, meta: dict) -> np.ndarray:
    image = Image.open(folder / meta["image"])
    assert image.mode == "RGB"
    return np.asarray(image)


def _mask(folder: Path, rel: str) -> np.ndarray:
    image = Image.open(folder / rel)
    assert image.mode == "L"
    mask = np.asarray(image)
    assert set(np.unique(mask).tolist()) <= {0, 255}
    return mask > 0


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_layout_and_json_fields(batch):
    folder, metas = batch
    for index, meta in enumerate(metas):
        stem = f"panel_{index:04d}"
        assert meta["image"] == f"{stem}.png" and meta["subject_mask"] == f"masks/{stem}_subject.png"
        assert meta["generator"] == "synth_styles" and meta["split"] == "dev" and meta["seed"] == index
        assert 512 <= meta["width"] <= 1024 and 512 <= meta["height"] <= 1024
        assert _image(folder, meta).shape == (meta["height"], meta["width"], 3)
        assert meta["background"] in BACKGROUNDS
        assert 1 <= len(meta["characters"]) <= 3
        assert sorted(meta["fonts_used"]) == sorted({t["font"] for t in meta["texts"]})
        for k, character in enumerate(meta["characters"]):
            assert character["mask"] == f"masks/{stem}_char{k}.png"


def test_character_masks_match_boxes_areas_and_subject(batch):
    folder, metas = batch
    for meta in metas:
        union = np.zeros((meta["height"], meta["width"]), bool)
        for character in meta["characters"]:
            mask = _mask(folder, character["mask"])
            assert character["bbox"] == _bbox(mask)
            assert character["area"] == int(mask.sum())
            union |= mask
        assert np.array_equal(_mask(folder, meta["subject_mask"]), union)


def test_characters_keep_apart_and_have_plausible_sizes(batch):
    folder, metas = batch
    six_px = np.ones((13, 13), np.uint8)  # grows a mask by 6 px in every direction, diagonals too
    for meta in metas:
        masks = [_mask(folder, c["mask"]) for c in meta["characters"]]
        for i, mask in enumerate(masks):
            grown = cv2.dilate(mask.astype(np.uint8), six_px) > 0
            for j in range(i + 1, len(masks)):
                assert not (grown & masks[j]).any(), (meta["image"], i, j)
            ys = np.nonzero(mask.any(axis=1))[0]
            assert 0.1 * meta["height"] < ys.max() - ys.min() + 1 < 0.9 * meta["height"]


def test_text_boxes_are_inside_and_hold_ink(batch):
    folder, metas = batch
    for meta in metas:
        image = _image(folder, meta).astype(int)
        for text in meta["texts"]:
            x0, y0, x1, y1 = text["box"]
            assert all(isinstance(v, int) for v in text["box"])
            assert 0 <= x0 < x1 <= meta["width"] and 0 <= y0 < y1 <= meta["height"], text
            assert len(text["polygon"]) == 4 and text["lang"] in ("ko", "en") and text["text"]
            ring = np.concatenate([image[max(0, y0 - 2), x0:x1], image[min(meta["height"] - 1, y1 + 1), x0:x1],
                                   image[y0:y1, max(0, x0 - 2)], image[y0:y1, min(meta["width"] - 1, x1 + 1)]])
            local = np.median(ring, axis=0)
            assert np.abs(image[y0:y1, x0:x1] - local).max(axis=-1).max() > 80, text


def test_boxes_are_tight_on_flat_fills(batch):
    """Lettering in a balloon or caption: the 1-px ring around the box is the plain fill, and every
    edge of the box touches ink (so the box is neither loose nor cut)."""
    folder, metas = batch
    checked = 0
    for meta in metas:
        image = _image(folder, meta).astype(int)
        for text in meta["texts"]:
            if text["kind"] == "sfx":
                continue
            x0, y0, x1, y1 = text["box"]
            ring = np.concatenate([image[y0 - 1, x0 - 1:x1 + 1], image[y1, x0 - 1:x1 + 1],
                                   image[y0:y1, x0 - 1], image[y0:y1, x1]])
            fill = ring[0]
            if text["kind"] == "vertical" and not (ring == fill).all():
                continue  # free columns sit on a halo that follows the glyphs, not on a flat fill
            assert (ring == fill).all(), text
            inside = np.abs(image[y0:y1, x0:x1] - fill).max(axis=-1) > 0
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any(), text
            checked += 1
    assert checked > 50


def test_polygons(batch):
    _, metas = batch
    for meta in metas:
        for text in meta["texts"]:
            x0, y0, x1, y1 = text["box"]
            quad = np.array(text["polygon"])
            if text["kind"] != "sfx":
                assert quad.tolist() == [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
            else:  # the rotated quad around the word holds the ink box and is not much bigger
                outer = np.array([quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()])
                grow = (np.array([x0, y0, -x1, -y1]) - outer * [1, 1, -1, -1])
                assert (grow >= -2).all(), text
                assert (grow <= 4 + 0.15 * max(x1 - x0, y1 - y0)).all(), text
                edges = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
                assert abs(edges[0] - edges[2]) <= 2 and abs(edges[1] - edges[3]) <= 2  # a rectangle


def test_text_is_never_over_a_character_or_another_text(batch):
    folder, metas = batch
    for meta in metas:
        subject = _mask(folder, meta["subject_mask"])
        flat = [t for t in meta["texts"] if t["kind"] != "sfx"]
        for i, text in enumerate(flat):
            x0, y0, x1, y1 = text["box"]
            assert not subject[y0:y1, x0:x1].any(), text
            for other in flat[i + 1:]:
                a0, b0, a1, b1 = other["box"]
                assert a1 <= x0 or x1 <= a0 or b1 <= y0 or y1 <= b0, (text, other)


def test_batch_covers_every_kind(batch):
    folder, metas = batch
    assert {m["background"] for m in metas} == BACKGROUNDS
    assert {t["kind"] for m in metas for t in m["texts"]} == TEXT_KINDS
    assert {t["lang"] for m in metas for t in m["texts"]} == {"ko", "en"}
    assert len({c["pose"] for m in metas for c in m["characters"]}) >= 5
    vertical = [t for m in metas for t in m["texts"] if t["kind"] == "vertical"]
    assert all(t["box"][3] - t["box"][1] > t["box"][2] - t["box"][0] for t in vertical)
    assert all(t["lang"] == "ko" for t in vertical)
    split = 0
    for meta in metas:
        for character in meta["characters"]:
            if "bubble" in character["occluded_by"]:
                mask = _mask(folder, character["mask"]).astype(np.uint8)
                parts = cv2.connectedComponents(mask, connectivity=8)[0] - 1
                split += parts >= 2
    assert split >= 3
