"""EvalConfig: defaults, validation errors that name the key, and loading from params.yaml / --set."""

from __future__ import annotations

import pytest

from fitad.config import ConfigError, load_section, parse_overrides
from fitad.evaluate.config import EvalConfig


def test_defaults():
    cfg = EvalConfig()
    assert cfg.clip_model == "tiny-clip" and cfg.base_model is None and cfg.trigger is None
    assert cfg.seeds == [0, 1] and cfg.steps == 20 and cfg.resolution is None and cfg.lora_scale == 1.0
    assert all("{trigger}" in p for p in cfg.prompts) and len(cfg.prompts) == 4


@pytest.mark.parametrize("kwargs, key", [
    (dict(prompts=[]), "evaluate.prompts"),
    (dict(prompts=["{trigger}", "a photo of a cat"]), "evaluate.prompts[1]"),
    (dict(seeds=[]), "evaluate.seeds"),
    (dict(seeds=[1, 1]), "evaluate.seeds"),
    (dict(seeds=[-1]), "evaluate.seeds[0]"),
    (dict(steps=0), "evaluate.steps"),
    (dict(guidance=-1.0), "evaluate.guidance"),
    (dict(resolution=32), "evaluate.resolution"),
    (dict(resolution=100), "evaluate.resolution"),
    (dict(lora_scale=9.0), "evaluate.lora_scale"),
    (dict(max_reference_images=0), "evaluate.max_reference_images"),
    (dict(device="tpu"), "evaluate.device"),
    (dict(clip_model=""), "evaluate.clip_model"),
    (dict(trigger="  "), "evaluate.trigger"),
])
def test_invalid_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        EvalConfig(**kwargs)
    assert key in str(err.value)


def test_prompt_texts_fill_only_the_trigger():
    cfg = EvalConfig(prompts=["{trigger}", "{trigger} in {style} style"])
    assert cfg.prompt_texts("zq") == ["zq", "zq in {style} style"]


def test_params_file_and_cli_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text('evaluate:\n  prompts: ["{trigger} on a poster", "a photo of {trigger}"]\n  steps: 4\n'
                      "  resolution: null\n", encoding="utf-8")
    cfg = load_section(EvalConfig, params, parse_overrides(["seeds=5,6", "evaluate.lora_scale=0.5",
                                                            "trigger=zq"], "evaluate"))
    assert cfg.prompts == ["{trigger} on a poster", "a photo of {trigger}"]
    assert (cfg.steps, cfg.seeds, cfg.lora_scale, cfg.trigger, cfg.resolution) == (4, [5, 6], 0.5, "zq", None)
    with pytest.raises(ConfigError, match="evaluate.seeds"):
        load_section(EvalConfig, params, parse_overrides(["seeds=a,b"], "evaluate"))
