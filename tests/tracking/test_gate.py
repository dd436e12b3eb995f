"""The gate's decisions on hand-picked metrics (each check in isolation, then against an approved version)."""

from __future__ import annotations

import math

import pytest

from fitad.config import ConfigError
from fitad.tracking.config import GateConfig, default_model_name
from fitad.tracking.gate import decide, metrics_from_tags

GOOD = {"clip_t": 0.30, "clip_i": 0.80, "effect_size": 0.20}
PRODUCTION = dict(min_clip_t=0.20, min_clip_i=0.60, min_effect_size=0.01, max_effect_size=0.60)


def test_all_checks_pass_on_good_metrics():
    decision = decide(GOOD, GateConfig(**PRODUCTION))
    assert decision.passed and decision.reasons == [] and len(decision.checks) == 4
    assert decision.tags()["fitad.gate.decision"] == "pass"


@pytest.mark.parametrize("change, word", [
    ({"clip_t": 0.10}, "gate.min_clip_t"),
    ({"clip_i": 0.40}, "gate.min_clip_i"),
    ({"effect_size": 0.001}, "gate.min_effect_size"),
    ({"effect_size": 0.90}, "gate.max_effect_size"),
    ({"clip_t": math.nan}, "clip_t is missing or not a number"),
])
def test_each_failed_check_is_a_reason(change, word):
    decision = decide({**GOOD, **change}, GateConfig(**PRODUCTION))
    assert decision.decision == "fail" and len(decision.reasons) == 1 and word in decision.reasons[0]


def test_missing_metric_fails():
    decision = decide({"clip_t": 0.3, "effect_size": 0.2}, GateConfig(**PRODUCTION))
    assert not decision.passed and any("clip_i is missing" in r for r in decision.reasons)


def test_comparison_with_the_approved_version():
    approved = {"clip_t": 0.30, "clip_i": 0.85}
    # 0.80 is 0.05 below the approved 0.85: more than the allowed 0.02 drop.
    worse = decide(GOOD, GateConfig(**PRODUCTION), approved, "4")
    assert not worse.passed and worse.compared_with == "4"
    assert worse.reasons == ["clip_i = 0.8000 is not >= 0.8300 (no worse than approved v4 - gate.max_drop_vs_approved)"]
    # within the tolerance passes
    assert decide({**GOOD, "clip_i": 0.835}, GateConfig(**PRODUCTION), approved, "4").passed
    # a metric the approved version lacks is not compared
    assert decide(GOOD, GateConfig(**PRODUCTION), {"clip_t": 0.30}, "4").passed


def test_disabled_gate_is_skipped_not_passed():
    decision = decide(GOOD, GateConfig(enabled=False, **PRODUCTION))
    assert decision.decision == "skipped" and not decision.passed


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="max_effect_size"):
        GateConfig(min_effect_size=0.5, max_effect_size=0.1)
    with pytest.raises(ConfigError, match="min_clip_t"):
        GateConfig(min_clip_t=3.0)


def test_metrics_round_trip_through_version_tags():
    tags = {"fitad.metric.clip_t": "0.25", "fitad.metric.bad": "n/a", "other": "1"}
    assert metrics_from_tags(tags) == {"clip_t": 0.25}


def test_default_model_name_is_a_valid_registry_name():
    assert default_model_name("sks") == "fitad-sks"
    assert default_model_name("my girl/2") == "fitad-my-girl-2"
    assert default_model_name(None) == "fitad-lora"
