"""`fitad ad` end to end through the click tree: files written, metadata in the PNG, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fitad.ads.result import read_ad_metadata
from fitad.cli import cli


@pytest.fixture
def photos(tmp_path):
    from skimage import data

    paths = {}
    for name in ("coffee", "astronaut"):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(paths[name])
    return paths


def _invoke(*args):
    return CliRunner().invoke(cli, ["ad", *args], catch_exceptions=False)


def test_compose_writes_png_and_json(tmp_path, photos):
    out = tmp_path / "ad.png"
    result = _invoke("compose", str(photos["coffee"]), "--format", "9:16", "--headline", "오늘만 특가",
                     "--industry", "빵집", "--lang", "en", "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.size == (1080, 1920)
    meta = read_ad_metadata(out)
    side = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["mode"] == side["mode"] == "compose"
    assert meta["format"]["key"] == "instagram_story" and side["industry"] == "빵집"
    assert meta["overlay"]["contrast"] >= 4.5
    assert all(tag.startswith("#") for tag in meta["copy"]["hashtags"])
    assert "wrote" in result.output and "contrast" in result.output


def test_product_with_tiny_models(tmp_path, photos, tiny_models_root, monkeypatch):
    monkeypatch.setattr("fitad.zoo.models_root", lambda root=None: tiny_models_root)
    out = tmp_path / "p.png"
    result = _invoke("product", str(photos["coffee"]), "--prompt", "봄 카페 테이블", "--headline", "신메뉴",
                     "--out", str(out), "--seed", "7", "--set", "work_side=64", "--set", "generate.steps=2")
    assert result.exit_code == 0, result.output
    meta = read_ad_metadata(out)
    assert meta["seed"] == 7 and meta["steps"] == 2 and meta["render_size"] == [64, 64]
    assert meta["kept"]["product"]["kept_pixels"] > 10_000
    assert "spring" in meta["prompt"]["used"] and "cafe" in meta["prompt"]["used"]
    assert "kept product" in result.output


@pytest.mark.parametrize("args, message", [
    (["person", "{coffee}"], "image: no face found"),
    (["compose", "{missing}"], "image: no such file"),
    (["compose", "{coffee}", "--format", "poster"], "unknown format 'poster'"),
    (["compose", "{coffee}", "--industry", "spaceport"], "spaceport"),
    (["compose", "{empty}", "--headline", "x"], "image: empty file"),
])
def test_bad_input_is_a_clear_error(tmp_path, photos, tiny_models_root, monkeypatch, args, message):
    monkeypatch.setattr("fitad.zoo.models_root", lambda root=None: tiny_models_root)
    (tmp_path / "empty.png").write_bytes(b"")
    names = {"coffee": photos["coffee"], "missing": tmp_path / "nope.png", "empty": tmp_path / "empty.png"}
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in args]
    result = CliRunner().invoke(cli, ["ad", *argv, "--out", str(tmp_path / "x.png"), "--set", "work_side=64",
                                      "--set", "generate.steps=1"])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_help_and_listings():
    assert "instagram_story" in _invoke("formats").output
    assert "nail_shop" in _invoke("industries").output
    for sub in ("txt2img", "product", "person", "advanced", "compose"):
        assert "--format" in _invoke(sub, "--help").output


def test_headline_too_long_fails_before_rendering(tmp_path, photos):
    result = CliRunner().invoke(cli, ["ad", "compose", str(photos["coffee"]), "--format", "kakao_banner",
                                      "--headline", "가나다라마바사 " * 60, "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "headline" in result.output
    assert np.all([not p.name.startswith("x") for p in tmp_path.iterdir()])


@pytest.mark.parametrize("extra, message", [
    (["--set", "generate.base_model=/no/such/model"], "generate.base_model"),
    (["--set", "generate.dtype=float64"], "generate.dtype"),
    (["--logo", "{notimage}"], "--logo"),
])
def test_model_and_option_errors_are_clear(tmp_path, photos, extra, message):
    notimage = tmp_path / "logo.png"
    notimage.write_text("not a picture")
    args = [a.format(notimage=notimage) for a in extra]
    result = CliRunner().invoke(cli, ["ad", "product", str(photos["coffee"]), "--out", str(tmp_path / "x.png"),
                                      *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_cuda_on_a_cpu_machine_is_a_clear_error(tmp_path, photos):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(cli, ["ad", "product", str(photos["coffee"]), "--set", "generate.device=cuda",
                                      "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "generate.device" in result.output
    assert isinstance(result.exception, SystemExit)
