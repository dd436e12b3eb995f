"""fitad.pipeline.data.fetch_images: synth panels, a local folder, and an S3 bucket on moto's real HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from fitad.pipeline.data import MANIFEST, DataSourceError, fetch_images

from tests.pipeline.conftest import BUCKET, OBJECTS


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def _check_manifest(folder: Path, uri: str, names: list[str]) -> dict:
    manifest = _manifest(folder)
    assert manifest["stage"] == "fetch" and manifest["data_uri"] == uri
    assert manifest["names"] == sorted(names)
    assert manifest["files"] == len(names)
    assert manifest["bytes"] == sum((folder / n).stat().st_size for n in names)
    return manifest


# ---------------------------------------------------------------- synth

def test_synth_writes_panels_ground_truth_and_manifest(tmp_path, params_yaml):
    out = tmp_path / "raw"
    result = fetch_images("synth:3", out)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["panel_0000.png", "panel_0001.png", "panel_0002.png"]
    manifest = _check_manifest(out, "synth:3", pngs)
    assert result == manifest  # what it returns is what it wrote
    synth = params_yaml["synth"]
    for name in pngs:
        truth = json.loads((out / name).with_suffix(".json").read_text(encoding="utf-8"))
        assert truth["image"] == name
        with Image.open(out / name) as image:
            assert image.size == (truth["width"], truth["height"])
            assert synth["min_side"] <= min(image.size) and max(image.size) <= synth["max_side"]
        assert (out / truth["subject_mask"]).is_file()


def test_synth_panels_do_not_depend_on_the_count(tmp_path):
    fetch_images("synth:1", tmp_path / "one")
    fetch_images("synth:2", tmp_path / "two")
    assert (tmp_path / "one" / "panel_0000.png").read_bytes() == (tmp_path / "two" / "panel_0000.png").read_bytes()
    assert _manifest(tmp_path / "two")["files"] == 2


# ---------------------------------------------------------------- a local folder

@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "source"
    (src / "nested").mkdir(parents=True)
    (src / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff" + b"jpeg body" * 50)
    (src / "notes.txt").write_text("any top-level file is taken", encoding="utf-8")
    (src / ".hidden.png").write_bytes(b"hidden")
    (src / "nested" / "deep.png").write_bytes(b"deep")
    return src


@pytest.mark.parametrize("form", ["path", "file_uri"])
def test_folder_top_level_files_are_copied_byte_for_byte(folder, tmp_path, form):
    uri = str(folder) if form == "path" else folder.as_uri()
    assert uri.startswith("file://") == (form == "file_uri")
    out = tmp_path / "out"
    fetch_images(uri, out)
    expected = ["a.png", "b.jpg", "notes.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, MANIFEST])
    for name in expected:
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    _check_manifest(out, uri, expected)


def test_folder_errors_name_the_folder(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(DataSourceError, match="missing"):
        fetch_images(str(missing), tmp_path / "out1")
    with pytest.raises(DataSourceError, match="missing"):
        fetch_images(missing.as_uri(), tmp_path / "out2")

    empty = tmp_path / "emptyfolder"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "x.png").write_bytes(b"x")
    (empty / ".only_hidden").write_bytes(b"x")
    with pytest.raises(DataSourceError) as info:
        fetch_images(str(empty), tmp_path / "out3")
    assert str(empty) in str(info.value)

    same = tmp_path / "same"
    same.mkdir()
    (same / "a.png").write_bytes(b"a")
    with pytest.raises(DataSourceError) as info:
        fetch_images(str(same), same)
    assert str(same) in str(info.value)
    assert (same / "a.png").read_bytes() == b"a"


# ---------------------------------------------------------------- S3 (moto's server over HTTP)


TOP = ["one.png", "two.bin"]


@pytest.mark.parametrize("uri", [f"s3://{BUCKET}/panels", f"s3://{BUCKET}/panels/"])
def test_s3_prefix_gives_its_top_level_files(s3_env, tmp_path, uri):
    out = tmp_path / "raw"
    fetch_images(uri, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*TOP, MANIFEST])
    for name in TOP:
        assert (out / name).read_bytes() == OBJECTS[f"panels/{name}"]
    _check_manifest(out, uri, TOP)


def test_s3_bucket_root(s3_env, tmp_path):
    fetch_images(f"s3://{BUCKET}", tmp_path / "raw")
    assert _manifest(tmp_path / "raw")["names"] == ["top.png"]
    assert (tmp_path / "raw" / "top.png").read_bytes() == OBJECTS["top.png"]


def test_mlflow_s3_endpoint_is_used_without_aws_endpoint(s3_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_env)
    out = tmp_path / "raw"
    fetch_images(f"s3://{BUCKET}/panels", out)
    assert {n: (out / n).read_bytes() for n in TOP} == {n: OBJECTS[f"panels/{n}"] for n in TOP}


@pytest.mark.parametrize("uri", ["s3://no-such-bucket/panels", f"s3://{BUCKET}/nothing-here",
                                 "s3://fitad-empty", f"s3://{BUCKET}/panels/sub/deeper"])
def test_s3_errors_name_the_uri(s3_env, tmp_path, uri):
    with pytest.raises(DataSourceError) as info:
        fetch_images(uri, tmp_path / "raw")
    assert uri in str(info.value)
    assert not (tmp_path / "raw" / MANIFEST).exists()


def test_a_folder_with_fetch_records_does_not_bring_them_along(tmp_path):
    src = tmp_path / "earlier"
    src.mkdir()
    (src / "a.png").write_bytes(b"a")
    (src / MANIFEST).write_text('{"stage": "fetch"}', encoding="utf-8")
    (src / "mlflow_run.json").write_text('{"run_id": "old", "parent_run_id": "old-parent"}', encoding="utf-8")
    out = tmp_path / "raw"
    out.mkdir()
    (out / "mlflow_run.json").write_text('{"run_id": "new", "parent_run_id": "new-parent"}', encoding="utf-8")
    fetch_images(str(src), out)
    assert _manifest(out)["names"] == ["a.png"]
    assert json.loads((out / "mlflow_run.json").read_text(encoding="utf-8"))["run_id"] == "new"
