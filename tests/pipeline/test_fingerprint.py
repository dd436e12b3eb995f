"""fitad.pipeline.fingerprint: the step cache must miss when the data, the code or the settings changed."""

from __future__ import annotations

import os

import boto3

from fitad.pipeline import fingerprint
from fitad.pipeline.fingerprint import config_version, data_version, prep_version
from fitad.pipeline.params import PipelineParams

from tests.pipeline.conftest import BUCKET


def test_a_folder_version_follows_its_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a" * 10)
    first = data_version(str(folder))
    assert data_version(str(folder)) == first == data_version(f"file://{folder}")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "sub").mkdir()
    assert data_version(str(folder)) == first  # hidden files and sub-folders are not data
    (folder / "b.png").write_bytes(b"b")
    added = data_version(str(folder))
    assert added != first
    (folder / "b.png").write_bytes(b"bb")
    os.utime(folder / "b.png", ns=(1, 1))
    assert data_version(str(folder)) not in (first, added)


def test_what_cannot_be_seen_from_here_is_never_reused(tmp_path):
    missing = str(tmp_path / "on-the-cluster")
    assert data_version(missing) != data_version(missing)
    assert data_version("synth:8") == "synth:8"  # made by the code: config_version covers it


def test_an_s3_version_follows_the_listing(s3_env):
    uri = f"s3://{BUCKET}/panels"
    first = data_version(uri)
    assert data_version(uri) == first and not first.startswith("unlisted")
    client = boto3.client("s3", endpoint_url=s3_env)
    client.put_object(Bucket=BUCKET, Key="panels/three.png", Body=b"new panel")
    try:
        assert data_version(uri) != first
    finally:
        client.delete_object(Bucket=BUCKET, Key="panels/three.png")
    assert data_version(uri) == first


def test_an_unlistable_bucket_is_never_reused(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    assert data_version("s3://b/p").startswith("unlisted") and data_version("s3://b/p") != data_version("s3://b/p")


def test_config_version_follows_settings_and_code(monkeypatch):
    base = config_version(PipelineParams())
    assert config_version(PipelineParams()) == base
    assert config_version(PipelineParams(rank=4)) != base
    assert config_version(PipelineParams(profile="production")) != base  # settings not among the parameters too
    monkeypatch.setattr(fingerprint, "source_digest", lambda: "other code")
    assert config_version(PipelineParams()) != base


def test_source_digest_reads_the_installed_package(tmp_path, monkeypatch):
    import fitad

    package = tmp_path / "fitad"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(fitad, "__file__", str(package / "__init__.py"))
    first = fingerprint.source_digest()
    (package / "stage.py").write_text("y = 2\n")
    assert fingerprint.source_digest() != first


def test_prep_version_ignores_what_only_training_reads():
    """A new base model or rank re-trains without redoing the OCR, crop and caption steps."""
    base = prep_version(PipelineParams())
    assert prep_version(PipelineParams(rank=4, base_model="other", min_clip_i=0.7)) == base
    assert prep_version(PipelineParams(text_box_threshold=0.5)) != base
    assert prep_version(PipelineParams(captioner="blip")) != base
    assert config_version(PipelineParams(rank=4)) != config_version(PipelineParams())


def test_what_only_register_reads_re_trains_nothing():
    base = config_version(PipelineParams())
    assert config_version(PipelineParams(min_clip_i=0.7, min_clip_t=0.2, model_name="shop-a")) == base
