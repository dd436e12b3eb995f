"""ServeConfig: params.yaml's serve section equals the defaults, bad values name their key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fitad.config import ConfigError, load_section
from fitad.serve.config import ServeConfig, load_serve_config

ROOT = Path(__file__).resolve().parents[2]


def test_params_yaml_serve_section_matches_the_defaults():
    section = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["serve"]
    defaults = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    assert section == defaults  # every key present, same values, nothing extra
    assert load_section(ServeConfig, ROOT / "params.yaml") == ServeConfig()


@pytest.mark.parametrize("key,value", [
    ("max_steps", 0), ("max_steps", 500), ("max_guidance", -1.0), ("max_queue", -1), ("retry_after_s", 0),
    ("timezone_offset_hours", 15), ("free_daily_images", -1), ("max_body_bytes", 10), ("poll_s", 0.0),
    ("model_name", "../etc"), ("alias", "has space"), ("lora", "  "), ("api_keys_file", ""),
])
def test_out_of_range_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"serve\.{key}"):
        ServeConfig(**{key: value})


def test_overrides_from_yaml_and_keywords(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  model_name: null\n  lora: outputs/lora\n  free_daily_images: 5\n", encoding="utf-8")
    cfg = load_serve_config(str(params), {"max_queue": 0})
    assert (cfg.model_name, cfg.lora, cfg.free_daily_images, cfg.max_queue) == (None, "outputs/lora", 5, 0)
    params.write_text("serve:\n  max_stepz: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        load_serve_config(str(params))


def test_quota_path_follows_fitad_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FITAD_HOME", str(tmp_path / "home"))
    assert ServeConfig().quota_path() == tmp_path / "home" / "serve" / "quota.sqlite3"
    assert ServeConfig(quota_db=str(tmp_path / "q.db")).quota_path() == tmp_path / "q.db"
    assert ServeConfig(quota_db="elsewhere/q.db").quota_path() == Path("elsewhere/q.db")
