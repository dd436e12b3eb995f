"""metadata.jsonl and caption paths must stay inside the dataset directory."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from fitad.train.data import DatasetError, load_dataset


@pytest.fixture
def outside(tmp_path):
    """A readable 64 px image + caption outside the dataset directory."""
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "secret.png")
    (tmp_path / "secret.txt").write_text("secret caption")
    return tmp_path / "secret.png"


def _metadata(root, *names):
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": "sks"}) + "\n" for n in names))


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_metadata_file_names_outside_the_dataset_are_refused(tmp_path, outside, kind):
    root = tmp_path / "ds"
    name = "../secret.png" if kind == "dotdot" else str(outside)
    _metadata(root, name)
    with pytest.raises(DatasetError, match=r"metadata\.jsonl:1: .*secret\.png.*outside the dataset"):
        load_dataset(root, 64)


def test_metadata_symlink_pointing_out_is_refused(tmp_path, outside, dataset_dir):
    os.symlink(outside, dataset_dir / "images" / "link.png")
    _metadata(dataset_dir, "images/img0.png", "images/link.png")
    with pytest.raises(DatasetError, match=r"metadata\.jsonl:2: .*link\.png.*outside the dataset"):
        load_dataset(dataset_dir, 64)


def test_folder_images_and_captions_linked_out_are_refused(tmp_path, outside, dataset_dir):
    os.symlink(outside, dataset_dir / "images" / "link.png")
    (dataset_dir / "images" / "img0.txt").unlink()
    os.symlink(outside.with_suffix(".txt"), dataset_dir / "images" / "img0.txt")
    with pytest.raises(DatasetError) as info:
        load_dataset(dataset_dir, 64)
    text = str(info.value)
    assert "link.png" in text and "img0.txt" in text and text.count("outside the dataset") == 2


def test_a_non_string_file_name_is_a_problem_not_a_crash(dataset_dir):
    (dataset_dir / "metadata.jsonl").write_text('{"file_name": 5, "text": "x"}\n')
    with pytest.raises(DatasetError, match=r"metadata\.jsonl:1: "):
        load_dataset(dataset_dir, 64)


def test_dot_segments_and_links_that_stay_inside_are_fine(dataset_dir):
    os.symlink(dataset_dir / "images" / "img2.png", dataset_dir / "images" / "alias.png")
    _metadata(dataset_dir, "./images/img1.png", "images/alias.png")
    assert len(load_dataset(dataset_dir, 64)) == 2
    _metadata(dataset_dir, "images/../images/img0.png")  # any '..' is refused, even one that comes back
    with pytest.raises(DatasetError, match=r"contains '\.\.'"):
        load_dataset(dataset_dir, 64)
