"""The approval gate: evaluation metrics against the thresholds of params.yaml and against the approved version."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from fitad.tracking.config import GateConfig

METRIC_TAG = "fitad.metric."      # a version's evaluation metrics live in its tags, so the gate can compare
DECISION_TAG = "fitad.gate.decision"
REASONS_TAG = "fitad.gate.reasons"
CHECKS_TAG = "fitad.gate.checks"


@dataclasses.dataclass
class GateDecision:
    """``decision`` is ``pass``, ``fail`` or ``skipped`` (gate disabled or nothing evaluated)."""

    decision: str
    reasons: list[str]
    checks: list[dict[str, Any]]
    compared_with: str | None = None   # the approved version the metrics were compared with

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    def tags(self) -> dict[str, str]:
        return {DECISION_TAG: self.decision, REASONS_TAG: "; ".join(self.reasons)[:5000],
                CHECKS_TAG: json.dumps(self.checks)[:5000],
                "fitad.gate.compared_with": self.compared_with or ""}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(x: float) -> str:
    """4 decimals, or 3 significant digits for tiny non-zero values (so 2e-06 does not print as 0.0000)."""
    return f"{x:.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:.3g}"


def metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            try:
                out[key[len(METRIC_TAG):]] = float(value)
            except ValueError:
                continue
    return out


def decide(metrics: Mapping[str, float], config: GateConfig, approved: Mapping[str, float] | None = None,
           approved_version: str | None = None) -> GateDecision:
    """Check every rule; the decision passes only when all checks do. Each failed check adds a reason."""
    if not config.enabled:
        return GateDecision("skipped", ["the gate is disabled (gate.enabled: false)"], [], approved_version)
    checks: list[dict[str, Any]] = []

    def check(name: str, metric: str, op: str, limit: float) -> None:
        value = metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            checks.append({"check": name, "metric": metric, "value": value, "limit": limit, "passed": False,
                           "reason": f"{metric} is missing or not a number in the evaluation"})
            return
        value = float(value)
        ok = value >= limit if op == ">=" else value <= limit
        checks.append({"check": name, "metric": metric, "value": value, "limit": limit, "passed": ok,
                       "reason": "" if ok else f"{metric} = {_fmt(value)} is not {op} {_fmt(limit)} ({name})"})

    check("gate.min_clip_t", "clip_t", ">=", config.min_clip_t)
    check("gate.min_clip_i", "clip_i", ">=", config.min_clip_i)
    check("gate.min_effect_size", "effect_size", ">=", config.min_effect_size)
    check("gate.max_effect_size", "effect_size", "<=", config.max_effect_size)
    if approved is not None:
        for metric in config.compare_metrics:
            if metric in approved:
                check(f"no worse than approved v{approved_version} - gate.max_drop_vs_approved", metric, ">=",
                      approved[metric] - config.max_drop_vs_approved)
    reasons = [c["reason"] for c in checks if not c["passed"]]
    return GateDecision("pass" if not reasons else "fail", reasons, checks, approved_version)
