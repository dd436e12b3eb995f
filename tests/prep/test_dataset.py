import json
import os
from pathlib import Path

import pytest

from fitad.prep.dataset import CropRecord, DatasetStore, ItemRecord, UnsafePathError, output_stems


def test_output_stems_disambiguate_shared_stems():
    stems = output_stems([Path("a.png"), Path("a.JPG"), Path("b c.png"), Path("ü.png")])
    assert stems == {"a.png": "a_png", "a.JPG": "a_jpg", "b c.png": "b_c", "ü.png": "ü"}


def make_record(store: DatasetStore, name="x.png", sha="abc", fp="f1") -> ItemRecord:
    (store.images / "x.png").write_bytes(b"png")
    (store.images / "x.txt").write_text("sks\n")
    return ItemRecord(input=name, status="ok", sha256=sha, fingerprint=fp,
                      crops=[CropRecord("images/x.png", "images/x.txt", "sks", [0, 0, 1, 1], [0, 0, 1, 1])])


def test_state_round_trip_and_up_to_date_rules(tmp_path):
    store = DatasetStore(tmp_path)
    store.prepare_dirs()
    record = make_record(store)
    store.save_record(record)
    loaded = store.load_record("x.png")
    assert loaded == record
    assert store.up_to_date(loaded, "abc", "f1")
    assert not store.up_to_date(loaded, "other", "f1")       # content changed
    assert not store.up_to_date(loaded, "abc", "f2")         # config changed
    (store.images / "x.png").unlink()
    assert not store.up_to_date(loaded, "abc", "f1")         # output deleted
    loaded.status = "failed"
    assert not store.up_to_date(loaded, "abc", "f1")         # failures are always retried


def test_prune_removes_outputs_of_vanished_inputs(tmp_path):
    store = DatasetStore(tmp_path)
    store.prepare_dirs()
    store.save_record(make_record(store))
    assert store.prune({"other.png"}) == ["x.png"]
    assert not (store.images / "x.png").exists() and store.load_record("x.png") is None


def test_metadata_lists_ok_crops_only(tmp_path):
    store = DatasetStore(tmp_path)
    store.prepare_dirs()
    ok = make_record(store)
    skipped = ItemRecord(input="y.png", status="skipped", reason="no subject")
    store.write_metadata([ok, skipped])
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"file_name": "images/x.png", "text": "sks"}]


def test_output_stems_never_collide():
    names = ["a b.png", "a_b.png", "x.png", "x.PNG", "a.png", "a.jpg", "a_png.webp", "y.png", "y-fig1.png"]
    stems = output_stems([Path(n) for n in names])
    assert len({s.lower() for s in stems.values()}) == len(names)
    assert stems["y-fig1.png"] == "y_fig1"  # -figN is kept for the crops of a multi-figure "y.png"
    assert stems["a b.png"] == "a_b_png" and stems["a_b.png"] == "a_b_png_2"  # same cleaned stem and extension
    assert output_stems([Path(n) for n in reversed(names)]) == stems  # independent of listing order


def _tampered_state(tmp_path, rel: str) -> tuple[DatasetStore, Path]:
    """A state record for x.png whose crop path is ``rel``, and a victim file outside the dataset."""
    store = DatasetStore(tmp_path / "out")
    store.prepare_dirs()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    record = ItemRecord(input="x.png", status="ok", sha256="abc", fingerprint="f1",
                        crops=[CropRecord(rel, "images/x.txt", "sks", [0, 0, 1, 1], [0, 0, 1, 1])])
    store.save_record(record)
    return store, victim


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_state_paths_outside_the_dataset_are_refused(tmp_path, kind):
    victim_rel = "../victim.txt" if kind == "dotdot" else str(tmp_path / "victim.txt")
    store, victim = _tampered_state(tmp_path, victim_rel)
    record = store.load_record("x.png")
    with pytest.raises(UnsafePathError, match=r"x\.png\.json.*x\.png.*victim\.txt.*outside"):
        store.prune(set())
    assert victim.read_text() == "keep me"
    with pytest.raises(UnsafePathError, match="victim"):
        store.remove_stale(record, ItemRecord(input="x.png"))
    with pytest.raises(UnsafePathError, match="victim"):
        store.up_to_date(record, "abc", "f1")
    assert victim.read_text() == "keep me"


def test_state_paths_through_a_symlink_out_are_refused(tmp_path):
    store, victim = _tampered_state(tmp_path, "images/link.txt")
    os.symlink(victim, store.images / "link.txt")
    with pytest.raises(UnsafePathError, match=r"images/link\.txt.*outside"):
        store.prune(set())
    assert victim.read_text() == "keep me"


def test_a_symlinked_images_folder_pointing_out_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "images")
    with pytest.raises(UnsafePathError, match="images.*outside"):
        DatasetStore(tmp_path / "out").prepare_dirs()


def test_check_state_finds_a_bad_record_before_anything_is_deleted(tmp_path):
    store, victim = _tampered_state(tmp_path, "../victim.txt")
    good = make_record(store, name="a.png")
    store.save_record(good)
    with pytest.raises(UnsafePathError, match="victim"):
        store.check_state()
    assert (store.images / "x.png").is_file() and victim.is_file()
