import io
import json
import shutil

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
        assert rec.backends == {"text_detector": "rapidocr", "segmenter": "opencv", "captioner": "template"}
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
    assert first.backends["used"][0]["segmenter"] == "opencv"
    write_tiny_u2net(home / "tiny_u2net.onnx")  # the production model appears on disk
    second = prepare(cfg, inputs, tmp_path / "out")
    assert not any(r.resumed for r in second.items)
    assert second.backends["used"][0]["segmenter"].startswith("rembg")
