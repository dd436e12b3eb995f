"""Config loading and validation: clear errors that name the key and the allowed range."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal, Optional

import pytest

from fitad.config import (ConfigError, SynthConfig, check_range, from_mapping, load_section,
                          parse_overrides, to_dict)


@dataclasses.dataclass
class _Toy:
    SECTION: ClassVar[str] = "toy"
    rank: int = 4
    gamma: Optional[float] = 5.0
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ("x",)
    flag: bool = False

    def __post_init__(self):
        check_range(self.SECTION, "rank", self.rank, lo=0, lo_open=True)
        check_range(self.SECTION, "gamma", self.gamma, lo=0, lo_open=True, allow_none=True)


def test_load_section_merges_file_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("toy:\n  rank: 8\n  gamma: null\n  names: [p, q]\nother: {x: 1}\n")
    cfg = load_section(_Toy, params, {"flag": "true"})
    assert cfg == _Toy(rank=8, gamma=None, names=("p", "q"), flag=True)
    cfg = load_section(_Toy, params, parse_overrides(["rank=16", "mode=b", "names=a,b"]))
    assert (cfg.rank, cfg.mode, cfg.names) == (16, "b", ("a", "b"))


def test_missing_params_file_gives_defaults(tmp_path):
    assert load_section(_Toy, tmp_path / "absent.yaml") == _Toy()


@pytest.mark.parametrize("data, message", [
    ({"rank": 0}, r"toy\.rank = 0 is out of range: must be > 0"),
    ({"rank": -3}, r"toy\.rank = -3 is out of range"),
    ({"gamma": 0}, r"toy\.gamma = 0\.0 is out of range: must be > 0"),
    ({"rank": "many"}, r"toy\.rank = 'many' is not a valid int"),
    ({"rank": 2.5}, r"toy\.rank = 2\.5 is not a valid int"),
    ({"mode": "c"}, r"toy\.mode = 'c' is not allowed: choose one of \['a', 'b'\]"),
    ({"flag": "maybe"}, r"toy\.flag = 'maybe' is not a valid bool"),
    ({"rnak": 4}, r"toy: unknown key\(s\) \['rnak'\]"),
    ({"rank": None}, r"toy\.rank: null is not allowed"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(_Toy, data)


def test_bad_yaml_names_the_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("toy: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_section(_Toy, params)


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_overrides(["rank"])


def test_synth_config_validation():
    with pytest.raises(ConfigError, match=r"synth\.n = 0"):
        SynthConfig(n=0)
    with pytest.raises(ConfigError, match=r"synth\.max_side = 300 is out of range: must be >= 512"):
        SynthConfig(max_side=300)
    assert to_dict(SynthConfig())["n"] == 24


def test_project_params_file_loads_every_known_section():
    # params.yaml at the repo root is what DVC and the CLI read: each section must validate.
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert load_section(SynthConfig, root / "params.yaml") is not None


@dataclasses.dataclass
class _WithNone:
    SECTION: ClassVar[str] = "q"
    quantize: Literal["none", "nf4"] = "nf4"
    gamma: Optional[float] = 1.0


def test_none_is_a_choice_where_the_literal_has_it_and_null_elsewhere():
    cfg = from_mapping(_WithNone, parse_overrides(["quantize=none", "gamma=none"]))
    assert cfg.quantize == "none" and cfg.gamma is None
    with pytest.raises(ConfigError, match=r"q\.quantize = 'int4' is not allowed"):
        from_mapping(_WithNone, {"quantize": "int4"})
