import io
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fitad.prep.config import PrepConfig
from fitad.prep.run import PrepError, load_backends, prepare, process_image

from .conftest import figure_panel


@pytest.fixture
def inputs(tmp_path, synth_dir):
    """Four synth panels (with their json and masks/, which prep must ignore) plus bad files."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        for ext in ("png", "json"):
            shutil.copy(synth_dir / f"panel_{i:04d}.{ext}", src)
    shutil.copytree(synth_dir / "masks", src / "masks")
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("not a picture")
    data = (synth_dir / "panel_0005.png").read_bytes()
    (src / "cut.png").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (200, 200), (250, 250, 250)).save(src / "blank.png")
    rgb, _truth = figure_panel()
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG")
    (src / "cmyk.jpg").write_bytes(buf.getvalue())
    return src


def test_process_image_chains_the_steps():
    rgb, truth = figure_panel(figures=((40, 60), (200, 80)))
    cfg = PrepConfig(resolution=128)
    result = process_image(rgb, cfg, load_backends(cfg))
    assert len(result.crops) == 2
    assert all(c.image.shape == (128, 128, 3) and c.caption == "sks" for c in result.crops)
    assert set(result.timings_ms) >= {"detect", "inpaint", "segment", "crop", "caption"}


def test_prepare_writes_dataset_and_reports_every_input(inputs, tmp_path):
    out = tmp_path / "out"
    cfg = PrepConfig(trigger="sks", class_word="girl", resolution=128)
    seen = []
    report = prepare(cfg, inputs, out, on_item=seen.append)
    by_name = {r.input: r for r in report.items}
    assert sorted(by_name) == sorted(["panel_0000.png", "panel_0001.png", "panel_0002.png", "panel_0003.png",
                                      "empty.png", "text.jpg", "cut.png", "blank.png", "cmyk.jpg"])
    assert len(seen) == len(by_name)
    assert by_name["empty.png"].status == "failed" and "empty file" in by_name["empty.png"].reason
    assert by_name["text.jpg"].status == "failed" and "not an image" in by_name["text.jpg"].reason
    assert by_name["cut.png"].status == "failed" and "truncated" in by_name["cut.png"].reason
    assert by_name["blank.png"].status == "skipped" and "no subject" in by_name["blank.png"].reason
    assert by_name["cmyk.jpg"].status == "ok" and "CMYK converted to RGB" in by_name["cmyk.jpg"].notes
    assert report.exit_code == 1 and report.totals["failed"] == 3

    for name in ("panel_0000.png", "panel_0001.png", "panel_0002.png", "panel_0003.png"):
        rec = by_name[name]
        assert rec.status == "ok" and rec.crops and rec.subject_bboxes
        assert rec.backends == {"text_detector": "rapidocr+letternet:letternet.onnx", "segmenter": "figurenet:figurenet.onnx",
                                "captioner": "template"}
        assert set(rec.timings_ms) >= {"load", "detect", "inpaint", "segment", "crop", "write"}
    assert any(by_name[f"panel_000{i}.png"].text_boxes for i in range(4))

    metadata = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(metadata) == report.totals["images_written"]
    for row in metadata:
        image = out / row["file_name"]
        assert Image.open(image).size == (128, 128)
        assert image.with_suffix(".txt").read_text().strip() == row["text"] == "sks girl"
    saved = json.loads((out / "report.json").read_text())
    assert saved["totals"]["failed"] == 3 and saved["config"]["trigger"] == "sks"
    assert "embedded default" in saved["backends"]["why"]["text_detector"][0]
    assert not list(out.rglob("*.tmp"))


def test_rerun_resumes_and_config_change_reprocesses(inputs, tmp_path):
    out = tmp_path / "out"
    cfg = PrepConfig(resolution=128)
    first = prepare(cfg, inputs, out)
    image = out / first.items[[r.input for r in first.items].index("panel_0000.png")].crops[0].image
    stamp = image.stat().st_mtime_ns
    second = prepare(cfg, inputs, out)
    resumed = {r.input for r in second.items if r.resumed}
    assert resumed == {r.input for r in first.items if r.status != "failed"}  # failures are retried
    assert image.stat().st_mtime_ns == stamp
    (inputs / "panel_0001.png").write_bytes((inputs / "panel_0002.png").read_bytes())  # content changed
    third = prepare(cfg, inputs, out)
    assert not {r.input: r for r in third.items}["panel_0001.png"].resumed
    fourth = prepare(PrepConfig(resolution=64), inputs, out)
    assert not any(r.resumed for r in fourth.items)
    assert Image.open(image.parent / image.name).size == (64, 64)


def test_two_workers_load_backends_once_each(synth_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    report = prepare(PrepConfig(workers=2, resolution=64), src, tmp_path / "out")
    assert report.totals["ok"] == 6
    assert 1 <= len(report.totals["worker_pids"]) <= 2
    assert report.totals["max_backend_loads_per_worker"] == 1


def test_missing_input_dir_and_broken_backend(tmp_path, monkeypatch):
    with pytest.raises(PrepError, match="does not exist"):
        prepare(PrepConfig(), tmp_path / "nope", tmp_path / "out")
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(figure_panel()[0]).save(src / "a.png")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(PrepError, match="rembg model 'u2net' not found"):
        prepare(PrepConfig(segmenter="rembg", rembg_model="u2net"), src, tmp_path / "out")


def test_a_new_backend_found_by_auto_makes_a_rerun_reprocess(inputs, tmp_path, monkeypatch):
    from .test_segment import write_tiny_u2net

    home = tmp_path / "u2net"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    cfg = PrepConfig(resolution=64, segmenter="auto", rembg_model="tiny_u2net.onnx")
    first = prepare(cfg, inputs, tmp_path / "out")
    assert first.backends["used"][0]["segmenter"] == "figurenet:figurenet.onnx"
    write_tiny_u2net(home / "tiny_u2net.onnx")  # the production model appears on disk
    second = prepare(cfg, inputs, tmp_path / "out")
    assert not any(r.resumed for r in second.items)
    assert second.backends["used"][0]["segmenter"].startswith("rembg")


# ---------------------------------------------------------------- input files: size cap, one read, unknown files

_OPENS: list[str] = []
_WATCH: dict[str, bool] = {"on": False}


def _audit(event, args):
    if _WATCH["on"] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENS.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened():
    """Paths opened (any mode) while the test runs, from Python's audit hook."""
    _OPENS.clear()
    _WATCH["on"] = True
    yield _OPENS
    _WATCH["on"] = False


def _panel_inputs(synth_dir, src, n=2):
    src.mkdir()
    for i in range(n):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    return src


def test_each_input_is_read_once_and_an_unchanged_rerun_reads_none(synth_dir, tmp_path, opened):
    src = _panel_inputs(synth_dir, tmp_path / "in")
    inputs = {str(p) for p in src.iterdir()}
    cfg = PrepConfig(resolution=64)
    opened.clear()
    first = prepare(cfg, src, tmp_path / "out")
    assert first.totals["ok"] == 2
    assert Counter(p for p in opened if p in inputs) == Counter({p: 1 for p in inputs})
    opened.clear()
    second = prepare(cfg, src, tmp_path / "out")
    assert all(r.resumed for r in second.items) and not [p for p in opened if p in inputs]
    # touched, same content (a git/DVC checkout): read once, recognised by its hash, not processed again
    touched = src / "panel_0000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    image = tmp_path / "out" / first.items[0].crops[0].image
    stamp = image.stat().st_mtime_ns
    opened.clear()
    third = prepare(cfg, src, tmp_path / "out")
    assert all(r.resumed for r in third.items) and [p for p in opened if p in inputs] == [str(touched)]
    assert image.stat().st_mtime_ns == stamp
    opened.clear()
    assert all(r.resumed for r in prepare(cfg, src, tmp_path / "out").items) and not opened.count(str(touched))


def test_files_above_max_file_bytes_are_refused_before_reading(synth_dir, tmp_path, opened):
    src = _panel_inputs(synth_dir, tmp_path / "in")
    big = src / "panel_0001.png"
    limit = big.stat().st_size - 1
    assert (src / "panel_0000.png").stat().st_size <= limit
    opened.clear()
    report = prepare(PrepConfig(resolution=64, max_file_bytes=limit), src, tmp_path / "out")
    by_name = {r.input: r for r in report.items}
    assert by_name["panel_0000.png"].status == "ok"
    rec = by_name["panel_0001.png"]
    assert rec.status == "failed" and "prep.max_file_bytes" in rec.reason and f"{limit:,}" in rec.reason
    assert str(big) not in opened
    assert report.exit_code == 1


def test_max_file_bytes_is_a_prep_setting():
    from fitad.config import ConfigError, load_section

    root = Path(__file__).resolve().parents[2]
    assert load_section(PrepConfig, root / "params.yaml").max_file_bytes == PrepConfig().max_file_bytes
    with pytest.raises(ConfigError, match=r"prep\.max_file_bytes = 0 is out of range"):
        PrepConfig(max_file_bytes=0)


def test_unsupported_and_unknown_files_are_listed_with_a_reason(synth_dir, tmp_path):
    src = _panel_inputs(synth_dir, tmp_path / "in", n=1)
    (src / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    (src / "notes.txt").write_text("hello")
    (src / "panel_0000.json").write_text("{}")
    (src / ".DS_Store").write_bytes(b"x")
    (src / "masks").mkdir()
    report = prepare(PrepConfig(resolution=64), src, tmp_path / "out")
    by_name = {r.input: r for r in report.items}
    assert by_name["phone.HEIC"].status == "skipped"
    assert by_name["phone.HEIC"].reason == "HEIC is not supported: convert to JPEG/PNG"
    ignored = {i["input"]: i["reason"] for i in report.ignored}
    assert ignored == {"notes.txt": "not an image extension (.txt)", "panel_0000.json": "not an image extension (.json)",
                       "masks": "a folder: only the top-level files of the input folder are read"}
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {i["input"] for i in saved["ignored"]} == set(ignored) and saved["totals"]["ignored"] == 3
    assert {i["input"]: i["status"] for i in saved["items"]} == {"panel_0000.png": "ok", "phone.HEIC": "skipped"}
    assert report.exit_code == 0


def test_avif_is_read_when_pillow_can_and_explained_when_not(synth_dir, tmp_path):
    from PIL import features

    src = _panel_inputs(synth_dir, tmp_path / "in", n=1)
    rgb, _truth = figure_panel()
    if features.check("avif"):
        Image.fromarray(rgb).save(src / "photo.avif", quality=90)
    else:
        (src / "photo.avif").write_bytes(b"\0\0\0\x1cftypavif" + b"\0" * 64)
    rec = {r.input: r for r in prepare(PrepConfig(resolution=64), src, tmp_path / "out").items}["photo.avif"]
    if features.check("avif"):
        assert rec.status == "ok", rec.reason
    else:
        assert rec.status == "skipped" and "AVIF" in rec.reason and "convert to JPEG/PNG" in rec.reason


def test_a_tampered_state_record_stops_the_stage(synth_dir, tmp_path):
    src = _panel_inputs(synth_dir, tmp_path / "in", n=1)
    out = tmp_path / "out"
    prepare(PrepConfig(resolution=64), src, out)
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep")
    state = out / ".prep-state" / "panel_0000.png.json"
    data = json.loads(state.read_text())
    data["crops"][0]["image"] = "../victim.png"
    state.write_text(json.dumps(data))
    with pytest.raises(PrepError, match=r"panel_0000\.png\.json.*\.\./victim\.png.*outside"):
        prepare(PrepConfig(resolution=64), src, out)
    (src / "panel_0000.png").unlink()  # the input is gone: prune would delete the record's files
    with pytest.raises(PrepError, match="victim"):
        prepare(PrepConfig(resolution=64), src, out)
    assert victim.read_bytes() == b"keep"


def test_the_report_says_why_a_region_was_left_out_and_where_a_figure_meets_the_edge(tmp_path):
    import numpy as np
    from PIL import ImageDraw

    from .conftest import draw_figure

    src = tmp_path / "in"
    src.mkdir()
    img = Image.new("RGB", (420, 300), (250, 250, 246))
    draw = ImageDraw.Draw(img)
    draw_figure(draw, 40, 150)                                      # its legs run off the bottom edge
    draw.rectangle((230, 60, 380, 200), fill=(200, 90, 60), outline=(10, 10, 10), width=4)   # a plain sign
    img.save(src / "scene.png")
    report = prepare(PrepConfig(segmenter="opencv", resolution=64), src, tmp_path / "out")
    record = report.items[0]
    assert record.status == "ok" and len(record.crops) == 1
    assert any("is not a figure: a plain rectangle" in reason for reason in record.rejected)
    assert record.crops[0].cut_at == ["bottom"]
    assert "touch the image edge" in record.reason and "left out" in record.reason
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["items"][0]
    assert saved["crops"][0]["cut_at"] == ["bottom"] and saved["rejected"] == record.rejected
    assert np.asarray(Image.open(tmp_path / "out" / saved["crops"][0]["image"])).shape == (64, 64, 3)
