"""fitad.pipeline.params: the pipeline's parameters, resolved from params.yaml and checked before a run."""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

from fitad.config import ConfigError
from fitad.pipeline.params import PipelineParams, check_params, profile_env, resolve_params

from tests.pipeline.conftest import PARAMS

# (field, bad value, the text the message must name)
BAD = [
    ("rank", 0, "pipeline.rank"),
    ("rank", -1, "pipeline.rank"),
    ("steps", 0, "pipeline.steps"),
    ("family", "sdxl", "pipeline.family"),
    ("resolution", 32, "pipeline.resolution"),
    ("learning_rate", 0, "pipeline.learning_rate"),
    ("trigger", "two words", "pipeline.trigger"),
    ("trigger", "", "pipeline.trigger"),
    ("data_uri", "gs://b/x", "pipeline.data_uri"),
    ("data_uri", "synth:abc", "pipeline.data_uri"),
    ("data_uri", "synth:0", "pipeline.data_uri"),
    ("data_uri", "", "pipeline.data_uri"),
]
IDS = [f"{field}={value!r}" for field, value, _ in BAD]


def _pair(field: str, value) -> str:
    return f"{field}={value}"


@pytest.mark.parametrize(("field", "value", "named"), BAD, ids=IDS)
def test_bad_value_is_refused_by_the_dataclass(field, value, named):
    with pytest.raises(ConfigError) as info:
        PipelineParams(**{field: value})
    assert named in str(info.value)


@pytest.mark.parametrize(("field", "value", "named"), BAD, ids=IDS)
def test_bad_value_is_refused_by_resolve_params(field, value, named):
    with pytest.raises(ConfigError) as info:
        resolve_params([_pair(field, value)])
    assert named in str(info.value)
    assert "FITAD_PROFILE" not in os.environ


@pytest.mark.parametrize(("field", "value", "named"), BAD, ids=IDS)
def test_bad_value_is_refused_by_check_params(field, value, named):
    with pytest.raises(ConfigError) as info:
        check_params({field: value})
    assert named in str(info.value)


def test_good_values_pass_every_door():
    values = {"rank": 1, "steps": 1, "resolution": 64, "learning_rate": 1.0, "trigger": "zork",
              "data_uri": "synth:1", "family": "flux"}
    direct = PipelineParams(**values)
    assert check_params(values) == direct
    resolved = resolve_params([_pair(k, v) for k, v in values.items()])
    assert dataclasses.asdict(resolved) == {**dataclasses.asdict(resolved), **values}
    for uri in ("s3://bucket/prefix", "file:///data/panels", "relative/folder", "/abs/folder", "synth:10000"):
        assert PipelineParams(data_uri=uri).data_uri == uri
    with pytest.raises(ConfigError, match="pipeline.data_uri"):
        PipelineParams(data_uri="synth:10001")


# ---------------------------------------------------------------- what only a stage config knows

@pytest.mark.parametrize(("arguments", "named"), [
    ({"text_box_threshold": 3}, "prep.text_box_threshold"),
    ({"text_box_threshold": 0}, "prep.text_box_threshold"),
    ({"min_clip_i": 2}, "gate.min_clip_i"),
    ({"min_clip_t": -3}, "gate.min_clip_t"),
    ({"captioner": "gpt"}, "prep.captioner"),
    ({"model_name": "has spaces!"}, "registry.model_name"),
    ({"experiment": " "}, "registry.experiment"),
])
def test_check_params_catches_what_only_a_stage_config_knows(arguments, named):
    PipelineParams(**arguments)  # the pipeline's own checks let it through ...
    with pytest.raises(ConfigError) as info:  # ... the stage's config does not
        check_params(arguments)
    assert named in str(info.value)


def test_check_params_names_an_unknown_key():
    with pytest.raises(ConfigError) as info:
        check_params({"rank": 4, "learning_rat": 0.1})
    assert "learning_rat" in str(info.value)


def test_check_params_returns_the_params():
    assert check_params({"rank": "16", "trigger": "zork"}) == PipelineParams(rank=16, trigger="zork")


# ---------------------------------------------------------------- resolving from params.yaml

def test_compiled_defaults_are_the_embedded_params_yaml_values(params_yaml):
    resolved = resolve_params([])
    assert resolved == PipelineParams()
    assert resolve_params([], PARAMS) == PipelineParams()
    assert resolved.rank == params_yaml["train"]["rank"]
    assert resolved.steps == params_yaml["train"]["steps"]
    assert resolved.resolution == params_yaml["train"]["resolution"] == params_yaml["prep"]["resolution"]
    assert resolved.learning_rate == pytest.approx(params_yaml["train"]["learning_rate"])
    assert resolved.text_box_threshold == pytest.approx(params_yaml["prep"]["text_box_threshold"])
    assert resolved.captioner == params_yaml["prep"]["captioner"]
    assert resolved.min_clip_i == pytest.approx(params_yaml["gate"]["min_clip_i"])
    assert resolved.min_clip_t == pytest.approx(params_yaml["gate"]["min_clip_t"])
    assert resolved.experiment == params_yaml["registry"]["experiment"]
    assert resolved.trigger == params_yaml["prep"]["trigger"]


def test_production_profile_gives_its_values_and_explicit_params_win(params_yaml):
    prod = params_yaml["profiles"]["production"]
    resolved = resolve_params(["profile=production"])
    assert resolved.profile == "production"
    assert resolved.rank == prod["train"]["rank"]
    assert resolved.steps == prod["train"]["steps"]
    assert resolved.resolution == prod["train"]["resolution"]
    assert resolved.learning_rate == pytest.approx(prod["train"]["learning_rate"])
    assert resolved.min_clip_t == pytest.approx(prod["gate"]["min_clip_t"])
    assert resolved.min_clip_i == pytest.approx(prod["gate"]["min_clip_i"])
    # what the profile does not set stays the section's
    assert resolved.text_box_threshold == pytest.approx(params_yaml["prep"]["text_box_threshold"])
    assert (resolved.rank, resolved.steps) != (params_yaml["train"]["rank"], params_yaml["train"]["steps"])
    assert "FITAD_PROFILE" not in os.environ  # the profile was active only while resolving

    mixed = resolve_params(["profile=production", "rank=4", "min_clip_i=0.7"])
    assert mixed.rank == 4 and mixed.min_clip_i == pytest.approx(0.7)
    assert mixed.steps == prod["train"]["steps"]  # the rest still from the profile
    assert resolve_params(["rank=4", "profile=production"]).rank == 4  # order does not matter


def test_flux_family_takes_the_train_flux_section(params_yaml):
    flux = resolve_params(["family=flux"])
    assert flux.family == "flux"
    assert flux.rank == params_yaml["train_flux"]["rank"]
    assert flux.steps == params_yaml["train_flux"]["steps"]
    prod = resolve_params(["family=flux", "profile=production"])
    assert prod.rank == params_yaml["profiles"]["production"]["train_flux"]["rank"]


# ---------------------------------------------------------------- stage configs

def test_stage_configs_put_each_value_in_its_section(params_yaml):
    configs = PipelineParams(rank=5, resolution=256, min_clip_t=0.3, model_name="my-model", trigger="zork",
                             class_word="girl", text_box_threshold=0.4, experiment="exp1").stage_configs()
    assert set(configs) == {"prep", "train", "evaluate", "registry", "gate"}
    assert configs["train"].rank == 5
    assert configs["prep"].resolution == 256 and configs["train"].resolution == 256
    assert configs["gate"].min_clip_t == pytest.approx(0.3)
    assert configs["registry"].model_name == "my-model" and configs["registry"].experiment == "exp1"
    assert configs["prep"].trigger == "zork" and configs["train"].trigger == "zork"
    assert configs["prep"].class_word == "girl"
    assert configs["prep"].text_box_threshold == pytest.approx(0.4)
    # "" strings leave the section's value
    assert configs["train"].base_model == params_yaml["train"]["base_model"]
    assert configs["registry"].model_name != ""
    plain = PipelineParams().stage_configs()
    assert plain["registry"].model_name == params_yaml["registry"]["model_name"]  # null: fitad-<trigger>
    assert plain["prep"].class_word == params_yaml["prep"]["class_word"]
    # a key the pipeline does not carry is the section's
    assert configs["train"].batch_size == params_yaml["train"]["batch_size"]
    assert configs["gate"].max_effect_size == pytest.approx(params_yaml["gate"]["max_effect_size"])


def test_stage_configs_given_base_model_wins():
    assert PipelineParams(base_model="some/hub-model").stage_configs()["train"].base_model == "some/hub-model"


def test_stage_configs_only_applies_the_named_keys(params_yaml):
    params = PipelineParams(rank=5, steps=3, resolution=256, min_clip_i=0.9)
    configs = params.stage_configs(only={"resolution"})
    assert configs["prep"].resolution == 256 and configs["train"].resolution == 256
    assert configs["train"].rank == params_yaml["train"]["rank"]
    assert configs["train"].steps == params_yaml["train"]["steps"]
    assert configs["gate"].min_clip_i == pytest.approx(params_yaml["gate"]["min_clip_i"])
    nothing = params.stage_configs(only=())
    assert nothing["prep"].resolution == params_yaml["prep"]["resolution"]


def test_flux_family_builds_the_flux_config(params_yaml):
    from fitad.train.config import FluxLoraConfig, SDLoraConfig

    flux = PipelineParams(family="flux").stage_configs(only={"family"})["train"]
    assert isinstance(flux, FluxLoraConfig)
    assert flux.base_model == params_yaml["train_flux"]["base_model"]
    assert flux.rank == params_yaml["train_flux"]["rank"]
    assert flux.quantize_base == params_yaml["train_flux"]["quantize_base"]
    assert PipelineParams(family="flux", rank=6).stage_configs()["train"].rank == 6
    assert isinstance(PipelineParams().stage_configs()["train"], SDLoraConfig)


# ---------------------------------------------------------------- another params.yaml, profiles

@pytest.fixture
def custom_params(tmp_path, params_yaml):
    data = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    data["profiles"]["mini"] = {"train": {"rank": 3, "steps": 7, "base_model": "my/mini"},
                                "gate": {"min_clip_i": 0.33}, "registry": {"experiment": "mini-exp"},
                                "prep": {"text_box_threshold": 0.45}}
    data["train"]["rank"] = 12  # this file's own section, not the project's
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_another_params_yaml_and_its_profile(custom_params):
    assert resolve_params([], custom_params).rank == 12
    mini = resolve_params(["profile=mini"], custom_params)
    assert (mini.rank, mini.steps, mini.min_clip_i, mini.experiment, mini.text_box_threshold) == (
        3, 7, pytest.approx(0.33), "mini-exp", pytest.approx(0.45))
    assert resolve_params(["profile=mini", "steps=9"], custom_params).steps == 9
    configs = PipelineParams(profile="mini").stage_configs(custom_params, only={"profile"})
    assert configs["train"].base_model == "my/mini" and configs["train"].rank == 3
    assert configs["registry"].experiment == "mini-exp"
    assert check_params({"profile": "mini"}, custom_params).profile == "mini"
    # the project's params.yaml does not know the profile
    with pytest.raises(ConfigError, match="mini"):
        resolve_params(["profile=mini"])
    assert "FITAD_PROFILE" not in os.environ


def test_an_undefined_profile_is_named(custom_params):
    for call in (lambda: resolve_params(["profile=nosuch"]), lambda: resolve_params(["profile=nosuch"], custom_params),
                 lambda: check_params({"profile": "nosuch"}),
                 lambda: PipelineParams(profile="nosuch").stage_configs()):
        with pytest.raises(ConfigError, match="nosuch"):
            call()
        assert "FITAD_PROFILE" not in os.environ


def test_profile_env_restores_the_variable(monkeypatch):
    monkeypatch.delenv("FITAD_PROFILE", raising=False)
    with profile_env("production"):
        assert os.environ["FITAD_PROFILE"] == "production"
    assert "FITAD_PROFILE" not in os.environ

    monkeypatch.setenv("FITAD_PROFILE", "embedded")
    with profile_env("production"):
        assert os.environ["FITAD_PROFILE"] == "production"
    assert os.environ["FITAD_PROFILE"] == "embedded"

    with pytest.raises(RuntimeError, match="boom"):
        with profile_env("production"):
            raise RuntimeError("boom")
    assert os.environ["FITAD_PROFILE"] == "embedded"

    for empty in ("", None):  # no profile: the variable is left as it is
        with profile_env(empty):
            assert os.environ["FITAD_PROFILE"] == "embedded"
        assert os.environ["FITAD_PROFILE"] == "embedded"


def test_a_profile_from_the_environment_travels_with_the_params(monkeypatch, params_yaml):
    from fitad.pipeline.steps import StepContext

    monkeypatch.setenv("FITAD_PROFILE", "production")
    arguments = dataclasses.asdict(resolve_params([]))
    assert arguments["rank"] == params_yaml["profiles"]["production"]["train"]["rank"]
    monkeypatch.delenv("FITAD_PROFILE")  # a step's pod: only the arguments reach it
    train = StepContext.of(arguments).config("train")
    assert train.base_model == params_yaml["profiles"]["production"]["train"]["base_model"]
