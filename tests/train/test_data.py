"""Dataset discovery, validation before any model load, resize/bucket rules and batch order."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image

from fitad.train.data import (BatchOrder, DatasetError, cover_scale, image_to_tensor, load_dataset, load_image,
                              make_buckets, nearest_bucket)

from .conftest import write_dataset


def test_kohya_layout(dataset_dir):
    ds = load_dataset(dataset_dir, 64)
    assert len(ds) == 4 and ds.targets == [(64, 64)] * 4
    assert ds.examples[0].caption == "fitadtok girl, picture 0" and ds.examples[0].size == (64, 64)
    assert len(ds.sha256) == 64 and ds.trigger is None


def test_metadata_jsonl_wins_and_falls_back_to_txt(dataset_dir):
    lines = [{"file_name": "images/img0.png", "text": "from metadata"}, {"file_name": "images/img1.png"}]
    (dataset_dir / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (dataset_dir / "report.json").write_text(json.dumps({"config": {"trigger": "fitadtok"}}))
    ds = load_dataset(dataset_dir, 64)
    assert [e.caption for e in ds.examples] == ["from metadata", "fitadtok girl, picture 1"]
    assert ds.trigger == "fitadtok"


def test_hash_changes_with_a_caption(dataset_dir):
    before = load_dataset(dataset_dir, 64).sha256
    assert load_dataset(dataset_dir, 64).sha256 == before
    (dataset_dir / "images" / "img2.txt").write_text("another caption")
    assert load_dataset(dataset_dir, 64).sha256 != before


def test_missing_and_empty_dataset(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope", 64)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(tmp_path / "empty", 64)


def test_every_problem_is_listed(tmp_path):
    root = write_dataset(tmp_path / "ds", n=3, captions=False)
    (root / "images" / "img0.txt").write_text("has a caption")
    (root / "images" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError) as info:
        load_dataset(root, 64)
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "img1.png: no caption" in text and "img2.png: no caption" in text
    assert "broken.png: not a readable image" in text


def test_bad_metadata_line_names_file_and_line(dataset_dir):
    (dataset_dir / "metadata.jsonl").write_text('{"file_name": "images/img0.png", "text": "ok"}\nnot json\n'
                                                '{"file_name": "images/missing.png", "text": "x"}\n')
    with pytest.raises(DatasetError, match=r"metadata.jsonl:2: not a JSON object(.|\n)*metadata.jsonl:3: image"):
        load_dataset(dataset_dir, 64)


def test_images_smaller_than_the_resolution_are_refused(dataset_dir):
    with pytest.raises(DatasetError, match=r"64x64 px is smaller than the training size 128x128"):
        load_dataset(dataset_dir, 128)
    assert len(load_dataset(dataset_dir, 128, allow_upscale=True)) == 4


def test_resize_covers_then_center_crops(tmp_path):
    img = Image.new("RGB", (120, 60), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 15, 60))  # blue left strip lies outside the centre crop
    img.save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", (32, 32))
    assert out.size == (32, 32) and out.getpixel((0, 16)) == (255, 0, 0)
    assert load_image(tmp_path / "wide.png", (32, 32), flip=True).size == (32, 32)
    t = image_to_tensor(out)
    assert t.shape == (3, 32, 32) and t.max().item() == pytest.approx(1.0) and t.min().item() == pytest.approx(-1.0)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (64, 64), (10, 20, 30, 0)).save(tmp_path / "cutout.png")
    assert load_image(tmp_path / "cutout.png", (64, 64)).getpixel((5, 5)) == (255, 255, 255)


def test_buckets():
    buckets = make_buckets(512)
    assert (512, 512) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert nearest_bucket((1000, 1000), buckets) == (512, 512)
    wide = nearest_bucket((1600, 900), buckets)
    assert wide[0] > wide[1] and abs(wide[0] / wide[1] - 16 / 9) < 0.2
    assert cover_scale((100, 50), (50, 50)) == 1.0 and cover_scale((40, 80), (80, 80)) == 2.0


def test_aspect_buckets_in_dataset(tmp_path):
    root = write_dataset(tmp_path / "ds", n=2, size=256)
    Image.new("RGB", (512, 256)).save(root / "images" / "wide.png")
    (root / "images" / "wide.txt").write_text("wide")
    ds = load_dataset(root, 256, aspect_buckets=True)
    assert ds.targets == [(256, 256), (256, 256), (320, 192)]


def test_batch_order_is_a_pure_function_of_the_step():
    targets = [(64, 64)] * 5 + [(64, 128)] * 2
    order = BatchOrder(targets, batch_size=2, seed=7)
    assert order.batches_per_epoch == 4  # 3 square batches (2+2+1) + 1 tall batch
    epoch0 = [order.batch(m) for m in range(4)]
    assert sorted(i for b in epoch0 for i in b) == list(range(7))  # each example once per epoch
    assert all(len({targets[i] for i in b}) == 1 for b in epoch0)  # one bucket per batch
    fresh = BatchOrder(targets, batch_size=2, seed=7)
    assert [fresh.batch(m) for m in (5, 2, 9)] == [order.batch(m) for m in (5, 2, 9)]
    assert [order.batch(m) for m in range(4, 8)] != epoch0  # reshuffled next epoch
    assert order.epoch_of(4) == 1


def test_batch_order_shards_across_processes():
    targets = [(64, 64)] * 8
    shards = [BatchOrder(targets, 2, seed=1, world_size=2, rank=r) for r in range(2)]
    seen = Counter(i for r in range(2) for m in range(2) for i in shards[r].batch(m))
    assert seen == Counter(range(8))


def test_a_dataset_a_prep_stage_did_not_finish_is_refused(tmp_path):
    """The caption stage marks its folder while it writes (fitad.prep.stages.INCOMPLETE): never train on half."""
    from fitad.prep.stages import INCOMPLETE
    from fitad.train.data import DatasetError, load_dataset

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), "red").save(images / "a.png")
    (images / "a.txt").write_text("sks")
    assert len(load_dataset(tmp_path, 64)) == 1
    (tmp_path / INCOMPLETE).write_text("{}")
    with pytest.raises(DatasetError, match="did not finish"):
        load_dataset(tmp_path, 64)
    (tmp_path / "report.json").write_text("{}")  # a finished prep wrote its report over the crashed run's folder
    assert len(load_dataset(tmp_path, 64)) == 1
