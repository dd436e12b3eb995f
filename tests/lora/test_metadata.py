"""Metadata of exported files, read back from the raw safetensors header and checked against what training was
given: the training config, the dataset's caption files, and the hashes recomputed the way A1111 does."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from fitad.lora.export import export_kohya
from fitad.lora.load import read_lora_meta
from fitad.lora.metadata import add_hashes, public_model_name

CAPTIONS = [
    "fitadtok girl, red hair, Smile, outdoors",
    "fitadtok girl,  red hair ,smile, , night",
    "fitadtok girl, red hair, smile, Red Hair",    # a tag twice in one caption counts twice (kohya)
    "Fitadtok Girl, looking at viewer",
]


def raw_header(path: Path) -> tuple[bytes, int, dict[str, str]]:
    """File bytes, header length and ``__metadata__``, parsed by hand (no safetensors reader involved)."""
    blob = Path(path).read_bytes()
    length = int.from_bytes(blob[:8], "little")
    return blob, length, json.loads(blob[8:8 + length]).get("__metadata__", {})


def a1111_model_hash(path: Path) -> str:
    """A1111 / additional-networks' safetensors hash: sha256 of everything after the header."""
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        fh.seek(8 + length)
        return hashlib.sha256(fh.read()).hexdigest()


def a1111_legacy_hash(path: Path) -> str:
    """A1111's old model hash: sha256 of 0x10000 bytes at offset 0x100000, first 8 hex digits."""
    with open(path, "rb") as fh:
        fh.seek(0x100000)
        return hashlib.sha256(fh.read(0x10000)).hexdigest()[:8]


def write_dataset(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:80] / 64
    for i, caption in enumerate(CAPTIONS):
        rgb = np.stack([xx * (i + 1) % 1.0, yy, (xx + yy + 0.25 * i) % 1.0], axis=-1)
        if i:  # the first image is 80 x 64: cropped to the 64 x 64 bucket, an aspect error of 0.25
            rgb = rgb[:, :64]
        Image.fromarray((rgb * 255).astype(np.uint8)).save(images / f"img{i}.png")
        (images / f"img{i}.txt").write_text(caption, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_models_root):
    """A real 2-step SD1.5 training run with non-default settings, and its kohya export."""
    from fitad.train.config import SDLoraConfig
    from fitad.train.sd_lora import train_sd_lora
    from fitad.zoo import ensure_tiny

    root = tmp_path_factory.mktemp("metadata")
    dataset = write_dataset(root / "sks_dataset")
    base = str(ensure_tiny("tiny-sd15", tiny_models_root))  # a local path: must not leak into the file
    config = SDLoraConfig(base_model=base, rank=4, alpha=2.0, resolution=64, batch_size=2, gradient_accumulation=2,
                          steps=2, learning_rate=3e-4, lr_scheduler="cosine", lr_warmup_steps=1, seed=7,
                          noise_offset=0.05, snr_gamma=None, clip_skip=1, mixed_precision="no",
                          gradient_checkpointing=False, cache_latents=True, random_flip=True, caption_dropout=0.1,
                          max_grad_norm=0.5, checkpoint_every=0, validation_every=0, trigger="fitadtok")
    before = time.time()
    result = train_sd_lora(config, dataset, root / "run", show_progress=False)
    after = time.time()
    out = export_kohya(result.adapter_dir, root / "sks_v1.safetensors")
    return {"config": config, "dataset": dataset, "base": base, "lora_dir": result.adapter_dir, "file": out,
            "before": before, "after": after, "root": root}


def test_training_settings_are_in_the_kohya_keys(trained):
    cfg = trained["config"]
    _, _, meta = raw_header(trained["file"])
    assert all(isinstance(v, str) for v in meta.values())
    expected = {
        "ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "2.0",
        "ss_base_model_version": "sd_v1", "ss_v2": "False", "ss_output_name": "sks_v1",
        "ss_clip_skip": "1", "ss_lr_scheduler": "cosine", "ss_lr_warmup_steps": "1", "ss_seed": "7",
        "ss_min_snr_gamma": "None", "ss_mixed_precision": "no", "ss_gradient_checkpointing": "False",
        "ss_gradient_accumulation_steps": "2", "ss_batch_size_per_device": "2", "ss_total_batch_size": "4",
        "ss_num_train_images": str(len(CAPTIONS)), "ss_num_reg_images": "0", "ss_cache_latents": "True",
        "ss_steps": "2", "ss_max_train_steps": "2", "ss_resolution": "(64, 64)", "ss_flip_aug": "True",
        "ss_enable_bucket": "False", "ss_shuffle_caption": "False",
    }
    assert {k: meta.get(k) for k in expected} == expected
    assert float(meta["ss_learning_rate"]) == cfg.learning_rate == float(meta["ss_unet_lr"])
    assert float(meta["ss_noise_offset"]) == cfg.noise_offset
    assert float(meta["ss_caption_dropout_rate"]) == cfg.caption_dropout
    assert float(meta["ss_max_grad_norm"]) == cfg.max_grad_norm
    assert meta["ss_optimizer"].startswith("torch.optim.AdamW(")
    assert f"weight_decay={cfg.weight_decay}" in meta["ss_optimizer"]
    # 4 images, batches of 2: 2 batches per epoch; 2 steps x 2 accumulated batches = 2 epochs
    assert (meta["ss_num_batches_per_epoch"], meta["ss_num_epochs"]) == ("2", "2")
    started, finished = float(meta["ss_training_started_at"]), float(meta["ss_training_finished_at"])
    assert trained["before"] - 1 <= started <= finished <= trained["after"] + 1
    assert meta["ss_session_id"].isdigit()


def test_tag_frequency_counts_the_caption_files(trained):
    dataset = trained["dataset"]
    counts: Counter[str] = Counter()
    for txt in sorted((dataset / "images").glob("*.txt")):
        for part in txt.read_text(encoding="utf-8").split(","):
            if part.strip():
                counts[part.strip().lower()] += 1
    _, _, meta = raw_header(trained["file"])
    assert json.loads(meta["ss_tag_frequency"]) == {dataset.name: dict(counts)}
    assert counts["fitadtok girl"] == 4 and counts["red hair"] == 4 and counts["smile"] == 3  # sanity of the data
    assert json.loads(meta["ss_dataset_dirs"]) == {dataset.name: {"n_repeats": 1, "img_count": len(CAPTIONS)}}
    buckets = json.loads(meta["ss_bucket_info"])
    assert buckets["buckets"] == {"0": {"resolution": [64, 64], "count": len(CAPTIONS)}}
    assert buckets["mean_img_ar_error"] == pytest.approx((80 / 64 - 1) / len(CAPTIONS))


def test_no_local_path_leaks_and_the_model_name_is_kept(trained):
    blob, length, meta = raw_header(trained["file"])
    assert meta["ss_sd_model_name"] == "tiny-sd15" == meta["fitad_base_model"]
    header_text = blob[8:8 + length].decode("utf-8")
    for private in (trained["base"], str(trained["root"]), str(Path.home())):
        assert private not in header_text


def test_modelspec_keys(trained):
    _, _, meta = raw_header(trained["file"])
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.implementation"] == "diffusers"
    assert meta["modelspec.title"] == "sks_v1"
    assert meta["modelspec.resolution"] == "64x64"
    assert meta["modelspec.trigger_phrase"] == "fitadtok"
    assert meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.encoder_layer"] == "1"
    date = datetime.datetime.fromisoformat(meta["modelspec.date"]).timestamp()
    assert trained["before"] - 2 <= date <= trained["after"] + 1


def test_clip_skip_is_in_the_manifest_and_read_back_from_dir_and_file(trained):
    manifest = json.loads((trained["lora_dir"] / "fitad_lora.json").read_text())
    assert manifest["clip_skip"] == trained["config"].clip_skip == 1
    assert read_lora_meta(trained["lora_dir"]).clip_skip == 1
    assert read_lora_meta(trained["file"]).clip_skip == 1


def test_hashes_match_a1111_on_the_written_file(trained):
    path = trained["file"]
    blob, _, meta = raw_header(path)
    assert meta["sshs_model_hash"] == a1111_model_hash(path)
    assert meta["modelspec.hash_sha256"] == "0x" + a1111_model_hash(path)
    # the legacy hash is precomputed (as kohya does) over the file holding only the ss_* keys
    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    ss_only = path.with_name("ss_only.safetensors")
    save_file(tensors, str(ss_only), metadata={k: v for k, v in meta.items() if k.startswith("ss_")})
    assert meta["sshs_legacy_hash"] == a1111_legacy_hash(ss_only)


def test_legacy_hash_of_a_file_larger_than_one_mebibyte(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"lora_unet_a.lora_down.weight": torch.randn(512, 768, generator=g),
               "lora_unet_a.lora_up.weight": torch.randn(768, 512, generator=g), "lora_unet_a.alpha": torch.tensor(4.0)}
    meta = {"ss_network_dim": "512", "ss_output_name": "big", "modelspec.sai_model_spec": "1.0.0", "other": "x"}
    hashed = add_hashes(tensors, meta)
    final = tmp_path / "final.safetensors"
    save_file(tensors, str(final), metadata=hashed)
    ss_only = tmp_path / "ss_only.safetensors"
    save_file(tensors, str(ss_only), metadata={k: v for k, v in meta.items() if k.startswith("ss_")})
    assert final.stat().st_size > 0x110000
    assert hashed["sshs_model_hash"] == a1111_model_hash(final) == a1111_model_hash(ss_only)
    assert hashed["sshs_legacy_hash"] == a1111_legacy_hash(ss_only) != hashlib.sha256(b"").hexdigest()[:8]
    assert hashed["modelspec.hash_sha256"] == "0x" + hashed["sshs_model_hash"]


@pytest.mark.parametrize("base, name, arch", [
    ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-dev", "flux-1-dev/lora"),
    ("/home/someone/models/FLUX.1-schnell", "FLUX.1-schnell", "flux-1-schnell/lora"),
    ("tiny-flux", "tiny-flux", "flux-1/lora"),
])
def test_flux_file_metadata(make_adapter, tmp_path, base, name, arch):
    adapter = make_adapter(family="flux", rank=2, alpha=2.0)
    info_path = adapter.lora_dir / "fitad_lora.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "base_model": base, "clip_skip": None}))
    _, _, meta = raw_header(export_kohya(adapter.lora_dir, tmp_path / "flux.safetensors"))
    assert meta["ss_sd_model_name"] == name and meta["modelspec.architecture"] == arch
    assert meta["modelspec.implementation"] == "https://github.com/black-forest-labs/flux"
    assert meta["ss_base_model_version"] == "flux1" and meta["modelspec.resolution"] == "64x64"
    for absent in ("ss_clip_skip", "modelspec.encoder_layer", "modelspec.prediction_type", "ss_v2"):
        assert absent not in meta
    assert "/home/someone" not in json.dumps(meta)


def test_public_model_name():
    assert public_model_name("stablediffusionapi/anything-v5") == "stablediffusionapi/anything-v5"
    assert public_model_name("tiny-sd15") == "tiny-sd15"
    assert public_model_name("/data/models/anything-v5/") == "anything-v5"
    assert public_model_name("~/models/my-model") == "my-model"
    assert public_model_name("./models/my-model") == "my-model"
    assert public_model_name(r"C:\models\my-model") == "my-model"
    assert public_model_name("a/b/c") == "c"
    assert public_model_name("") == ""


def test_gradient_checkpointing_key_is_what_the_run_used(trained, tmp_path):
    """``auto`` resolves per device (off on the CPU): the file says what the run did, not the config word."""
    import dataclasses

    from fitad.train.sd_lora import train_sd_lora

    config = dataclasses.replace(trained["config"], gradient_checkpointing="auto")
    result = train_sd_lora(config, trained["dataset"], tmp_path / "run", show_progress=False)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    out = export_kohya(result.adapter_dir, tmp_path / "auto.safetensors")
    _raw, _size, header = raw_header(out)
    assert summary["gradient_checkpointing"] is False                 # what the CPU run used
    assert header["ss_gradient_checkpointing"] == str(summary["gradient_checkpointing"])
