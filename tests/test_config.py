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


@dataclasses.dataclass
class _Words:
    SECTION: ClassVar[str] = "words"
    precision: Literal["auto", "no", "fp16"] = "auto"
    switch: Literal["on", "off", "auto"] = "auto"
    label: str = "x"
    maybe: Optional[str] = "set"
    gamma: Optional[float] = 1.0
    rank: int = 4
    flag: bool = False
    names: list[str] = dataclasses.field(default_factory=list)


def test_set_keeps_yaml_words_that_a_literal_or_str_field_takes():
    # YAML 1.1 reads no/on/off/yes as booleans; a field that takes the very string gets the string.
    cfg = from_mapping(_Words, parse_overrides(["precision=no", "switch=on", "label=no", "maybe=none",
                                                "flag=no", "gamma=none", "names=[yes, b]"]))
    assert (cfg.precision, cfg.switch, cfg.label, cfg.maybe) == ("no", "on", "no", "none")
    assert cfg.flag is False and cfg.gamma is None and cfg.names == ["yes", "b"]
    cfg = from_mapping(_Words, parse_overrides(["label=0.10", "maybe=null", "rank=8", "gamma=1e-3"]))
    assert (cfg.label, cfg.maybe, cfg.rank, cfg.gamma) == ("0.10", None, 8, 0.001)


def test_params_file_yaml_booleans_are_read_as_the_literal_word(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("words:\n  precision: no\n  switch: off\n")
    cfg = load_section(_Words, params)
    assert (cfg.precision, cfg.switch) == ("no", "off")


def test_set_null_overrides_the_params_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("words:\n  gamma: 5.0\n  maybe: abc\n")
    cfg = load_section(_Words, params, parse_overrides(["gamma=null", "maybe=~"]))
    assert cfg.gamma is None and cfg.maybe is None


def test_set_accepts_a_section_prefix_and_names_a_wrong_one(tmp_path):
    cfg = load_section(_Words, tmp_path / "absent.yaml", parse_overrides(["words.rank=8", "words.precision=no"]))
    assert (cfg.rank, cfg.precision) == (8, "no")
    with pytest.raises(ConfigError, match=r"'train\.rank'.*section 'train'.*'words'"):
        load_section(_Words, tmp_path / "absent.yaml", parse_overrides(["train.rank=8"]))


def test_build_config_takes_dvc_style_overrides_for_the_training_config(tmp_path):
    from fitad.cli.common import build_config
    from fitad.train.config import FluxLoraConfig, SDLoraConfig

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  base_model: some/model\n  rank: 32\n  alpha: 16\n"
                      "train_flux:\n  base_model: flux/model\n")
    cfg = build_config(SDLoraConfig, params, ("train.rank=8", "mixed_precision=no", "train.alpha=null"))
    assert (cfg.rank, cfg.mixed_precision, cfg.alpha) == (8, "no", 8.0)  # alpha null: equal to rank
    cfg = build_config(FluxLoraConfig, params, ("train_flux.quantize_base=none", "train-flux.rank=4"))
    assert (cfg.quantize_base, cfg.rank) == ("none", 4)
    with pytest.raises(ConfigError, match="'train'.*'train_flux'"):
        build_config(FluxLoraConfig, params, ("train.rank=8",))
    assert build_config(SDLoraConfig, params, ("rank=8",), rank=2).rank == 2  # explicit options win


def test_set_lists_and_booleans_are_read_by_the_field_type():
    cfg = from_mapping(_Words, parse_overrides(["names=a, b", "flag=1"]))
    assert cfg.names == ["a", "b"] and cfg.flag is True
    with pytest.raises(ConfigError, match=r"words\.names = '\[a' is not a valid list"):
        from_mapping(_Words, parse_overrides(["names=[a"]))


def test_set_reads_union_fields_by_each_member_type():
    """``bool | Literal['auto']`` and ``int | Literal['auto']`` take their member types' spellings too."""
    from fitad.cli.common import build_config
    from fitad.train.config import SDLoraConfig

    cfg = build_config(SDLoraConfig, None, ("gradient_checkpointing=1", "log_every=5.0"))
    assert cfg.gradient_checkpointing is True and cfg.log_every == 5 and isinstance(cfg.log_every, int)
    cfg = build_config(SDLoraConfig, None, ("gradient_checkpointing=Off", "log_every=auto"))
    assert cfg.gradient_checkpointing is False and cfg.log_every == "auto"
    with pytest.raises(ConfigError, match=r"train\.log_every = .*2\.5"):
        build_config(SDLoraConfig, None, ("log_every=2.5",))


def test_profiles_lay_changes_over_sections(tmp_path, monkeypatch):
    from fitad.config import SynthConfig

    monkeypatch.delenv("FITAD_PROFILE", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text("profile: big\nprofiles:\n  big: {synth: {n: 50}}\n  small: {}\n"
                      "synth: {n: 4, seed: 3}\n")
    assert (load_section(SynthConfig, params).n, load_section(SynthConfig, params).seed) == (50, 3)
    assert load_section(SynthConfig, params, {"n": 7}).n == 7  # the command line still wins
    monkeypatch.setenv("FITAD_PROFILE", "small")
    assert load_section(SynthConfig, params).n == 4
    monkeypatch.setenv("FITAD_PROFILE", "huge")
    with pytest.raises(ConfigError, match=r"profile 'huge' is not defined under 'profiles:' \(defined: \['big', 'small'\]\)"):
        load_section(SynthConfig, params)
    monkeypatch.delenv("FITAD_PROFILE")
    params.write_text("profile: big\nprofiles:\n  big: [1, 2]\nsynth: {n: 4}\n")
    with pytest.raises(ConfigError, match="profiles.big must be a mapping"):
        load_section(SynthConfig, params)
