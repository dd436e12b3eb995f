"""Synthetic manga panels: determinism, layout, and ground truth that matches the pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fitad.cli import cli
from fitad.config import ConfigError, SynthConfig, from_mapping
from fitad.synth import (BACKGROUNDS, BUBBLE_LINES, SFX_WORDS, mask_bbox, panel_size, screentone,
                         synthesize)

PANELS = 6


@pytest.fixture(scope="module")
def panels(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("synth")
    paths = synthesize(SynthConfig(n=PANELS, seed=11, text_probability=1.0), out, progress=False)
    return out, [json.loads(p.with_suffix(".json").read_text(encoding="utf-8")) for p in paths]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rgb(folder: Path, meta: dict) -> np.ndarray:
    return np.asarray(Image.open(folder / meta["image"]).convert("RGB"))


def _mask(folder: Path, rel: str) -> np.ndarray:
    img = Image.open(folder / rel)
    assert img.mode == "L"
    arr = np.asarray(img)
    assert set(np.unique(arr)) <= {0, 255}
    return arr > 0


# ---------------------------------------------------------------- determinism

def test_same_seed_gives_identical_bytes_and_panels_do_not_depend_on_n(tmp_path):
    synthesize(SynthConfig(n=3, seed=5), tmp_path / "a", progress=False)
    synthesize(SynthConfig(n=3, seed=5), tmp_path / "b", progress=False)
    synthesize(SynthConfig(n=1, seed=6), tmp_path / "c", progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert not any(name.endswith(".tmp") for name in a)      # atomic writes leave no temp files
    c = _files(tmp_path / "c")                               # panel 1 of seed 5 is panel 0 of seed 6
    assert c["panel_0000.png"] == a["panel_0001.png"]
    assert c["masks/panel_0000_subject.png"] == a["masks/panel_0001_subject.png"]


def test_different_seed_gives_different_panels(tmp_path):
    synthesize(SynthConfig(n=1, seed=5), tmp_path / "a", progress=False)
    synthesize(SynthConfig(n=1, seed=500), tmp_path / "b", progress=False)
    assert (tmp_path / "a/panel_0000.png").read_bytes() != (tmp_path / "b/panel_0000.png").read_bytes()


# ---------------------------------------------------------------- sizes and backgrounds

def test_panel_sizes_stay_in_range_and_vary():
    sizes = [panel_size(np.random.default_rng(s), 512, 1024) for s in range(200)]
    assert all(512 <= side <= 1024 for size in sizes for side in size)
    ratios = [h / w for w, h in sizes]
    assert min(ratios) < 0.75 and max(ratios) > 1.7          # landscape and tall webtoon strips
    assert any(w == h for w, h in sizes) and any(0.7 < r < 0.85 or 1.2 < r < 1.6 for r in ratios)
    assert [panel_size(np.random.default_rng(3), 600, 600)] == [(600, 600)]


def test_written_panels_match_their_json_and_cycle_backgrounds(panels):
    folder, metas = panels
    for meta in metas:
        img = Image.open(folder / meta["image"])
        assert img.mode == "RGB"
        assert img.size == (meta["width"], meta["height"])
        assert 512 <= meta["width"] <= 1024 and 512 <= meta["height"] <= 1024
    assert len({(m["width"], m["height"]) for m in metas}) > 1
    assert sorted({m["background"] for m in metas}) == sorted(BACKGROUNDS)


def test_screentone_dot_coverage_matches_dot_geometry():
    dots = screentone(300, 300, pitch=8.0, angle_deg=45.0, radius=2.4)
    assert dots.mean() == pytest.approx(np.pi * 2.4 ** 2 / 8.0 ** 2, rel=0.1)


# ---------------------------------------------------------------- ground truth

def test_json_schema(panels):
    folder, metas = panels
    for i, meta in enumerate(metas):
        assert set(meta) == {"image", "width", "height", "seed", "background", "texts", "characters",
                             "subject_mask"}
        assert meta["image"] == f"panel_{i:04d}.png" and meta["seed"] == 11 + i
        assert meta["subject_mask"] == f"masks/panel_{i:04d}_subject.png"
        assert meta["background"] in BACKGROUNDS
        assert 1 <= len(meta["characters"]) <= 2
        for k, char in enumerate(meta["characters"]):
            assert set(char) == {"bbox", "mask", "area"}
            assert char["mask"] == f"masks/panel_{i:04d}_char{k}.png"
            assert (folder / char["mask"]).is_file()
            assert all(isinstance(v, int) for v in char["bbox"]) and char["area"] > 0
        for text in meta["texts"]:
            assert set(text) == {"text", "lang", "kind", "box", "polygon"}
            assert text["lang"] in ("ko", "en") and text["kind"] in ("bubble", "sfx")
            assert text["text"].strip() and len(text["polygon"]) == 4
            assert all(len(p) == 2 for p in text["polygon"])
        # written with indent=2 and sorted keys, so the files diff well
        raw = (folder / f"panel_{i:04d}.json").read_text(encoding="utf-8")
        assert raw == json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    texts = [t for m in metas for t in m["texts"]]
    assert {t["lang"] for t in texts} == {"ko", "en"} and {t["kind"] for t in texts} == {"bubble", "sfx"}


def test_masks_match_bboxes_areas_and_subject_union(panels):
    folder, metas = panels
    for meta in metas:
        union = np.zeros((meta["height"], meta["width"]), dtype=bool)
        for char in meta["characters"]:
            mask = _mask(folder, char["mask"])
            assert mask.shape == union.shape
            assert list(mask_bbox(mask)) == char["bbox"]
            assert int(mask.sum()) == char["area"]
            assert not (mask & union).any()                  # a pixel belongs to one figure
            union |= mask
        assert np.array_equal(_mask(folder, meta["subject_mask"]), union)


def test_masks_exclude_what_is_drawn_on_top(panels):
    folder, metas = panels
    for meta in metas:
        gray = np.asarray(Image.open(folder / meta["image"]).convert("L"))
        subject = _mask(folder, meta["subject_mask"])
        for text in meta["texts"]:
            x0, y0, x1, y1 = text["box"]
            if text["kind"] == "bubble":                      # bubble glyphs sit on white paper
                assert not subject[y0:y1, x0:x1][gray[y0:y1, x0:x1] < 80].any()
        # the black frame and the page around it are never part of a figure
        assert not subject[0].any() and not subject[-1].any()
        assert not subject[:, 0].any() and not subject[:, -1].any()


def test_characters_are_sizeable_and_stand_out_from_the_local_background(panels):
    folder, metas = panels
    for meta in metas:
        rgb = _rgb(folder, meta).astype(np.int32)
        subject = _mask(folder, meta["subject_mask"])
        for char in meta["characters"]:
            assert char["area"] >= 0.02 * meta["width"] * meta["height"]
            mask = _mask(folder, char["mask"])
            x0, y0, x1, y1 = char["bbox"]
            ring = np.zeros_like(mask)
            ring[max(0, y0 - 16):y1 + 16, max(0, x0 - 16):x1 + 16] = True
            ring &= ~subject
            for text in meta["texts"]:
                tx0, ty0, tx1, ty1 = text["box"]
                ring[ty0:ty1, tx0:tx1] = False
            background = np.median(rgb[ring], axis=0)
            distance = np.abs(rgb[mask] - background).sum(axis=1)
            assert (distance > 60).mean() > 0.5, (meta["image"], char["mask"])


def test_text_boxes_are_inside_and_hold_legible_dark_glyphs(panels):
    folder, metas = panels
    for meta in metas:
        gray = np.asarray(Image.open(folder / meta["image"]).convert("L"))
        w, h = meta["width"], meta["height"]
        for text in meta["texts"]:
            x0, y0, x1, y1 = text["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert y1 - y0 >= 20                              # glyphs big enough for a detector
            crop = gray[y0:y1, x0:x1]
            assert (crop < 80).sum() >= 0.05 * crop.size, text
            for px, py in text["polygon"]:
                assert 0 <= px <= w and 0 <= py <= h
            if text["kind"] == "bubble":                      # pure white bubble: ink touches every side
                ink = crop < 255
                assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), text


def test_texts_do_not_overlap_each_other(panels):
    _, metas = panels
    for meta in metas:
        boxes = [t["box"] for t in meta["texts"]]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_text_probability_zero_gives_panels_without_text(tmp_path):
    paths = synthesize(SynthConfig(n=2, seed=1, text_probability=0.0, min_side=256, max_side=384),
                       tmp_path, progress=False)
    for path in paths:
        assert json.loads(path.with_suffix(".json").read_text())["texts"] == []


def test_bundled_font_covers_every_synth_text():
    fontTools = pytest.importorskip("fontTools.ttLib")
    from fitad.fonts import default_font_path

    cmap = fontTools.TTFont(str(default_font_path())).getBestCmap()
    words = [*BUBBLE_LINES["ko"], *BUBBLE_LINES["en"], *SFX_WORDS["ko"], *SFX_WORDS["en"]]
    missing = sorted({ch for word in words for ch in word if ch != " " and ord(ch) not in cmap})
    assert missing == []


# ---------------------------------------------------------------- config and CLI

@pytest.mark.parametrize(("values", "key"), [({"n": 0}, "synth.n"),
                                             ({"min_side": 800, "max_side": 600}, "synth.max_side"),
                                             ({"text_probability": 1.5}, "synth.text_probability"),
                                             ({"seed": -1}, "synth.seed")])
def test_bad_config_names_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SynthConfig(**values)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(SynthConfig, values)


def test_synthesize_refuses_a_file_as_output(tmp_path):
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="not_a_dir"):
        synthesize(SynthConfig(n=1), target, progress=False)


def test_cli_writes_panels_and_reports_backgrounds(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  n: 5\n  min_side: 256\n  max_side: 384\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(out), "--n", "2", "--seed", "3",
                                      "--no-progress", "--params", str(params),
                                      "--set", "max_characters=1"])
    assert result.exit_code == 0, result.output
    assert f"wrote 2 panels (seeds 3..4) to {out}" in result.output
    assert "plain: 1" in result.output and "screentone: 1" in result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["panel_0000.png", "panel_0001.png"]
    for meta in (json.loads(p.read_text()) for p in out.glob("*.json")):
        assert max(meta["width"], meta["height"]) <= 384 and len(meta["characters"]) == 1


def test_cli_rejects_bad_values_with_the_key(tmp_path):
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path), "--min-side", "900",
                                      "--max-side", "600", "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "synth.max_side" in result.output
