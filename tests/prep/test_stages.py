"""The three prep stages (clean_text -> crop_subjects -> caption_dataset) against prepare()."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fitad.prep import caption_dataset, clean_text, crop_subjects, prepare
from fitad.prep.config import PrepConfig
from fitad.prep.run import PrepError

CONFIG = PrepConfig(trigger="sks", class_word="girl", resolution=96)
MAKERS = {"text_detector": "make_text_detector", "segmenter": "make_segmenter", "captioner": "make_captioner"}


def only_loads(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Make every backend maker but ``kind``'s raise."""
    import fitad.prep.run as run

    def refuse(*_args, **_kwargs):
        raise AssertionError("a backend this stage does not use was loaded")

    for other, maker in MAKERS.items():
        if other != kind:
            monkeypatch.setattr(run, maker, refuse)


def run_chain(src: Path, root: Path, config: PrepConfig = CONFIG):
    """The three stages, each allowed to load its own backend only."""
    reports = []
    for kind, stage, out in (("text_detector", clean_text, "clean"), ("segmenter", crop_subjects, "crops"),
                             ("captioner", caption_dataset, "data")):
        with pytest.MonkeyPatch.context() as mp:
            only_loads(mp, kind)
            reports.append(stage(config, reports[-1].output_dir if reports else src, root / out))
    return reports


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def panels(synth_dir, tmp_path_factory) -> Path:
    """Four synth panels and a corrupt PNG."""
    src = tmp_path_factory.mktemp("stages") / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    data = (synth_dir / "panel_0005.png").read_bytes()
    (src / "broken.png").write_bytes(data[: len(data) // 3])
    return src


@pytest.fixture(scope="module")
def chain(panels):
    root = panels.parent
    reports = run_chain(panels, root)
    prepared = prepare(CONFIG, panels, root / "prepared")
    return reports, prepared


def test_three_stages_give_the_dataset_prepare_gives(chain):
    (clean, crop, caption), prepared = chain
    data, ref = Path(caption.output_dir), Path(prepared.output_dir)
    ours = {n: b for n, b in files(data / "images").items()}
    theirs = files(ref / "images")
    assert sorted(ours) == sorted(theirs) and len(theirs) > 4
    for name in theirs:
        if name.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(data / "images" / name)),
                                  np.asarray(Image.open(ref / "images" / name))), name
        else:
            assert ours[name] == theirs[name], name
    assert (data / "metadata.jsonl").read_text().splitlines() == (ref / "metadata.jsonl").read_text().splitlines()
    keys = ("input", "status", "reason", "sha256", "width", "height", "source_mode", "notes", "text_boxes",
            "subject_bboxes", "rejected", "crops")
    report = json.loads((data / "report.json").read_text())
    expected = json.loads((ref / "report.json").read_text())
    assert [{k: i[k] for k in keys} for i in report["items"]] == [{k: i[k] for k in keys} for i in expected["items"]]
    # an input that failed in clean_text never met the segmenter or captioner: compare the others' backends
    assert ([i["backends"] for i in report["items"] if i["status"] == "ok"]
            == [i["backends"] for i in expected["items"] if i["status"] == "ok"])
    assert report["config"]["trigger"] == "sks" and report["backends"]["used"] == expected["backends"]["used"]
    assert report["totals"]["images_written"] == expected["totals"]["images_written"]
    # the intermediate folders: cleaned images and masks, then crops named as in the dataset
    assert sorted(files(Path(clean.output_dir) / "masks")) == [f"panel_000{i}.png" for i in range(4)]
    crops = files(Path(crop.output_dir) / "images")
    assert crops == {n: b for n, b in ours.items() if n.endswith(".png")}  # copied byte for byte


def test_each_stage_loads_only_its_backend_and_writes_a_manifest(chain):
    reports, _ = chain  # run_chain made the other backend makers raise
    for report, name, kinds in zip(reports, ("clean_text", "crop_subjects", "caption_dataset"),
                                   (["text_detector"], ["text_detector", "segmenter"], list(MAKERS))):
        manifest = json.loads(report.manifest_path.read_text())
        assert manifest["stage"] == name and manifest["config"]["class_word"] == "girl"
        assert manifest["totals"]["ok"] == 4 and manifest["totals"]["failed"] == 1 and report.exit_code == 1
        assert manifest["input_dir"] == str(report.input_dir) and len(manifest["upstream"]) == len(kinds) - 1
        ok = [i for i in manifest["items"] if i["status"] == "ok"]
        assert all(sorted(i["backends"]) == sorted(kinds) for i in ok)  # this stage's backend added to earlier ones
    cleaned, cropped = ({i.input: i for i in r.items}["panel_0000.png"] for r in reports[:2])
    assert cropped.text_boxes == cleaned.text_boxes and cropped.sha256 == cleaned.sha256  # carried over
    assert cropped.crops and all(c.subject_bbox and c.crop_box for c in cropped.crops)


def test_recaptioning_uses_the_new_trigger_without_ocr_or_segmentation(chain, tmp_path, monkeypatch):
    import fitad.prep.run as run

    reports, _ = chain
    crops = reports[1].output_dir
    only_loads(monkeypatch, "captioner")
    for step in ("clean_image", "crop_image"):
        monkeypatch.setattr(run, step, lambda *a, **k: pytest.fail("text cleanup or segmentation ran again"))
    out = tmp_path / "data"
    for trigger in ("ohwx", "zwx"):
        report = caption_dataset(PrepConfig(trigger=trigger, resolution=96), crops, out)
        captions = {p.read_text().strip() for p in (out / "images").glob("*.txt")}
        assert captions == {trigger} and report.totals["ok"] == 4
        assert json.loads((out / "report.json").read_text())["config"]["trigger"] == trigger
        rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
        assert {r["text"] for r in rows} == {trigger}


def test_bad_files_become_failed_items_and_a_missing_input_stops_the_stage(chain, tmp_path):
    (clean, crop, caption), _ = chain
    for report in (clean, crop, caption):
        broken = {i.input: i for i in report.items}["broken.png"]
        assert broken.status == "failed" and "truncated" in broken.reason
    assert clean.totals["carried"] == 0 and crop.totals["carried"] == 1  # carried through, not processed again
    # a corrupt cleaned image: crop_subjects names the file it read, the others go on
    bad = tmp_path / "clean"
    shutil.copytree(clean.output_dir, bad)
    (bad / "images" / "panel_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    items = {i.input: i for i in crop_subjects(CONFIG, bad, tmp_path / "crops").items}
    assert items["panel_0001.png"].status == "failed" and "images/panel_0001.png" in items["panel_0001.png"].reason
    assert items["panel_0000.png"].status == "ok"
    for stage in (clean_text, crop_subjects, caption_dataset):
        with pytest.raises(PrepError, match="nope.*does not exist"):
            stage(CONFIG, tmp_path / "nope", tmp_path / "out")
    with pytest.raises(PrepError, match="must differ"):
        crop_subjects(CONFIG, bad, bad)
    with pytest.raises(PrepError, match="reads the output folder of crop_subjects"):
        caption_dataset(CONFIG, bad, tmp_path / "out")
    with pytest.raises(PrepError, match="not crop_subjects's"):  # another stage's folder is not overwritten
        crop_subjects(CONFIG, bad, clean.output_dir)


def test_crop_subjects_reads_a_plain_folder_of_images(panels, tmp_path):
    plain = tmp_path / "raw"
    shutil.copytree(panels, plain)
    (plain / "manifest.json").write_text('{"stage": "fetch", "files": 5}')  # another tool's: just a file
    report = crop_subjects(CONFIG, plain, tmp_path / "crops")
    assert report.totals["ok"] == 4 and {i.input: i.status for i in report.items}["broken.png"] == "failed"
    # without the clean-text stage's masks nothing tells lettering from figures: crops of both may come out
    assert list((tmp_path / "crops" / "images").glob("panel_0001*.png"))


def test_rerun_removes_stale_outputs_and_refuses_a_manifest_pointing_out(synth_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    out = tmp_path / "clean"
    clean_text(CONFIG, src, out)
    (out / "notes.txt").write_text("mine")
    (out / "images" / "extra.png").write_bytes(b"mine")
    (src / "panel_0002.png").unlink()
    clean_text(CONFIG, src, out)
    assert sorted(files(out / "images")) == ["extra.png", "panel_0000.png", "panel_0001.png"]
    assert sorted(files(out / "masks")) == ["panel_0000.png", "panel_0001.png"]
    assert (out / "notes.txt").read_text() == "mine"

    before = files(out)
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["items"][0]["mask"] = "../victim.png"
    (out / "manifest.json").write_text(json.dumps(manifest))
    (src / "panel_0000.png").unlink()  # a re-run would delete that item's files
    with pytest.raises(PrepError, match=r"manifest\.json.*panel_0000\.png.*\.\./victim\.png.*outside"):
        clean_text(CONFIG, src, out)
    assert victim.read_bytes() == b"keep"
    assert files(out) == {**before, "manifest.json": (out / "manifest.json").read_bytes()}


def test_two_workers_write_what_one_writes(synth_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    one = clean_text(PrepConfig(resolution=96), src, tmp_path / "one")
    two = clean_text(PrepConfig(resolution=96, workers=2), src, tmp_path / "two")
    assert two.totals["ok"] == 4 and two.totals["max_backend_loads_per_worker"] == 1
    assert files(tmp_path / "one" / "images") == files(tmp_path / "two" / "images")
    assert files(tmp_path / "one" / "masks") == files(tmp_path / "two" / "masks")
    assert [i.text_boxes for i in one.items] == [i.text_boxes for i in two.items]


def test_an_input_folder_inside_the_output_folder_is_refused_before_anything_is_written(synth_dir, tmp_path):
    out = tmp_path / "clean"
    raw = out / "images"  # clean_text would write its cleaned images over these
    raw.mkdir(parents=True)
    for i in range(2):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", raw)
    (out / "raw").mkdir()
    shutil.copy(synth_dir / "panel_0002.png", out / "raw")
    # an input that is a link into a folder the stage writes: it would write over the file it reads
    links = tmp_path / "links"
    links.mkdir()
    (links / "panel_0000.png").symlink_to(raw / "panel_0000.png")
    before = files(tmp_path)
    for src in (raw, out / "raw"):
        with pytest.raises(PrepError, match=f"must not contain it.*{src}.*{out}"):  # names both folders
            clean_text(CONFIG, src, out)
    with pytest.raises(PrepError, match="must not contain it"):
        crop_subjects(CONFIG, raw, out)
    with pytest.raises(PrepError, match=r"links/panel_0000\.png.*could be written over"):
        clean_text(CONFIG, links, out)
    assert files(tmp_path) == before and not (out / "masks").exists()
    # legitimate layouts: sibling folders, an output folder inside the input folder or elsewhere
    assert clean_text(CONFIG, out / "raw", tmp_path / "sibling").totals["ok"] == 1
    assert clean_text(CONFIG, out / "raw", out / "raw" / "clean").totals["ok"] == 1
    assert clean_text(CONFIG, out / "raw", tmp_path / "a" / "b").totals["ok"] == 1


def _crash_after_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """clean_text's per-item work raises (as a full disk or a kill would) once the first item is written."""
    from fitad.prep import stages

    done = []

    def work(*args):
        if done:
            raise RuntimeError("crashed mid-run")
        done.append(1)
        return stages._clean_task(*args)

    monkeypatch.setattr(stages, "_CLEAN", dataclasses.replace(stages._CLEAN, work=work))


def test_a_crashed_rerun_leaves_no_manifest_and_the_next_stage_refuses_its_folder(synth_dir, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(synth_dir / f"panel_{i:04d}.png", src)
    out, crops = tmp_path / "clean", tmp_path / "crops"
    clean_text(CONFIG, src, out)
    (src / "panel_0002.png").unlink()  # its outputs are stale from now on
    with monkeypatch.context() as mp:
        _crash_after_first(mp)
        with pytest.raises(RuntimeError, match="crashed"):
            clean_text(CONFIG, src, out)
    assert not (out / "manifest.json").exists()  # nothing claims the half-rewritten folder is complete
    with pytest.raises(PrepError, match=f"{out}.*did not finish"):
        crop_subjects(CONFIG, out, crops)
    assert not crops.exists()
    # the next complete run still removes what the last complete run wrote for the removed input
    report = clean_text(CONFIG, src, out)
    assert report.totals["ok"] == 2 and json.loads((out / "manifest.json").read_text())["totals"]["ok"] == 2
    assert sorted(files(out / "images")) == sorted(files(out / "masks")) == ["panel_0000.png", "panel_0001.png"]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["manifest.json"]
    assert crop_subjects(CONFIG, out, crops).totals["ok"] == 2
    # a first run that crashes leaves no manifest either
    with monkeypatch.context() as mp:
        _crash_after_first(mp)
        with pytest.raises(RuntimeError, match="crashed"):
            clean_text(CONFIG, src, tmp_path / "first")
    assert not (tmp_path / "first" / "manifest.json").exists()
    with pytest.raises(PrepError, match="first.*did not finish"):
        crop_subjects(CONFIG, tmp_path / "first", tmp_path / "crops2")


def test_a_failed_caption_lists_no_crop_and_its_stale_files_are_removed(chain, tmp_path):
    (_clean, crop, _caption), _ = chain
    crops, data = tmp_path / "crops", tmp_path / "data"
    shutil.copytree(crop.output_dir, crops)
    caption_dataset(CONFIG, crops, data)
    stale = {c.image for c in {i.input: i for i in crop.items}["panel_0001.png"].crops}
    assert stale and all((data / rel).is_file() for rel in stale)
    for rel in stale:  # the crop no longer decodes on the re-run
        (crops / rel).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = caption_dataset(CONFIG, crops, data)
    item = {i.input: i for i in report.items}["panel_0001.png"]
    assert item.status == "failed" and "images/panel_0001" in item.reason and item.crops == []
    manifest = json.loads((data / "manifest.json").read_text())
    listed = {p for i in manifest["items"] for c in i["crops"] for p in (c["image"], c["caption_file"])}
    assert listed and all((data / rel).is_file() for rel in listed)  # only files this run wrote
    assert not any((data / rel).exists() or (data / rel).with_suffix(".txt").exists() for rel in stale)
    assert sorted(files(data / "images")) == sorted(p[len("images/"):] for p in listed)
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    assert not {r["file_name"] for r in rows} & stale


def test_prepare_over_a_crashed_stage_folder_leaves_a_whole_dataset(tmp_path, panels):
    """`fitad prep` (what dvc repro runs) rewriting a folder a stage left unfinished clears the stage's marker."""
    from fitad.prep.stages import INCOMPLETE
    from fitad.train.data import load_dataset

    out = tmp_path / "data"
    out.mkdir()
    (out / INCOMPLETE).write_text("{}")
    prepare(PrepConfig(resolution=64), panels, out)
    assert not (out / INCOMPLETE).exists()
    assert len(load_dataset(out, 64)) >= 1
