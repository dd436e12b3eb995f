"""The register stage: log a trained LoRA as an MLflow model, register it as a version, run the gate.

``register_lora`` reads a training output folder (``lora/``, ``train_summary.json``, ``mlflow_run.json``)
and an evaluation folder (``metrics.json``, ``grid.png``, ``report.json``), logs the model into the
training run (one version per training run), registers it under ``registry.model_name``
(``fitad-<trigger>`` by default) with the ``candidate`` alias, records its metrics and the gate's decision
as version tags, and moves ``approved`` to it only when the gate passes. ``registration.json`` in the
output folder records the outcome for DVC and for the next door.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from fitad.fsutil import atomic_write_json
from fitad.lora.export import INFO_FILE, WEIGHTS_FILE
from fitad.tracking.config import APPROVED, GateConfig, RegistryConfig, default_model_name
from fitad.tracking.gate import METRIC_TAG, GateDecision, decide, metrics_from_tags
from fitad.tracking.lineage import end_pipeline_run, find_parent, read_run_file
from fitad.tracking.model import base_license, log_beside, log_lora_model
from fitad.tracking.registry import Registry
from fitad.tracking.store import default_tracking_uri, normalize_uri

RESULT_FILE = "registration.json"
EVAL_SETUP_TAG = "fitad.eval_setup"


class RegisterError(ValueError):
    """The inputs cannot be registered; the message names the file and what is wrong."""


@dataclasses.dataclass
class RegistrationResult:
    name: str
    version: str
    model_uri: str
    run_id: str
    approved: bool
    gate: GateDecision
    out_file: Path

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "model_uri": self.model_uri, "run_id": self.run_id,
                "approved": self.approved, "registry_uri": f"models:/{self.name}/{self.version}",
                "gate": self.gate.as_dict()}


def _read_metrics(eval_dir: Path) -> dict[str, float]:
    path = eval_dir / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegisterError(f"{path}: no evaluation metrics (run `fitad evaluate` first)") from None
    except (OSError, ValueError) as exc:
        raise RegisterError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RegisterError(f"{path}: expected a JSON object of metric name -> number")
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def eval_setup(eval_dir: Path) -> str | None:
    """A short hash of how the metrics were measured (CLIP model, prompts, seeds, steps, ...): metrics of two
    versions are comparable only when it is equal."""
    try:
        config = json.loads((eval_dir / "report.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    keys = ("clip_model", "prompts", "seeds", "steps", "guidance", "resolution", "lora_scale", "max_reference_images")
    blob = json.dumps({k: config.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _train_run(client: Any, train_dir: Path, uri: str, experiment: str) -> tuple[str, str | None]:
    """The training run to log the model into (and its pipeline run); a new run when training was not tracked in
    this store (or the store no longer has the run)."""
    from mlflow.exceptions import MlflowException

    record = read_run_file(train_dir)
    if record and normalize_uri(str(record.get("tracking_uri", ""))) == uri:
        try:
            run = client.get_run(record["run_id"])
        except MlflowException:
            run = None
        if run is not None:
            if run.info.status == "FAILED":
                reason = run.data.tags.get("fitad.failure_reason", "no reason recorded")
                raise RegisterError(f"{train_dir}: its MLflow run {run.info.run_id} FAILED ({reason}); "
                                    "not registering it")
            parent = record.get("parent_run_id")
            return run.info.run_id, parent if parent and _exists(client, parent) else None
    from fitad.tracking.mlflow_tracker import MlflowTracker

    parent, _ = find_parent(client, [train_dir], uri)
    tracker = MlflowTracker(experiment=experiment, run_name=f"register {train_dir.name}", tracking_uri=uri,
                            tags={"fitad.stage": "register", "fitad.note": "training was not tracked in this "
                                  "store; this run holds the registered model"}, parent_run_id=parent)
    tracker.close("FINISHED")
    return tracker.run_id, parent


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
        return True
    except MlflowException:
        return False


def register_lora(registry_config: RegistryConfig, gate_config: GateConfig, train_dir: str | os.PathLike,
                  eval_dir: str | os.PathLike | None, out_dir: str | os.PathLike, *,
                  kohya_file: str | os.PathLike | None = None, prep_dir: str | os.PathLike | None = None,
                  tracking_uri: str | None = None, version_tags: Mapping[str, str] | None = None
                  ) -> RegistrationResult:
    """Register ``train_dir/lora`` and apply the gate to ``eval_dir``'s metrics (no eval_dir: gate skipped).

    ``version_tags`` (the Kubeflow run that produced it) go on the model version, the training run and the pipeline
    run."""
    from fitad.lora.files import read_lora_info

    train_dir, out = Path(train_dir), Path(out_dir)
    lora_dir = train_dir / "lora"
    if not (lora_dir / WEIGHTS_FILE).is_file() and not (lora_dir / INFO_FILE).is_file():
        raise RegisterError(f"{train_dir}: no LoRA to register (expected {lora_dir}/{WEIGHTS_FILE}, "
                            "written by `fitad train`)")
    info = read_lora_info(lora_dir)
    if info is None:
        raise RegisterError(f"{lora_dir}: {INFO_FILE} is missing, so the base model and trigger are unknown")
    metrics = _read_metrics(Path(eval_dir)) if eval_dir is not None else {}
    setup = eval_setup(Path(eval_dir)) if eval_dir is not None else None
    uri = normalize_uri(tracking_uri) if tracking_uri else default_tracking_uri()
    registry = Registry(uri, registry_config.timeout_s)
    run_id, parent = _train_run(registry.client, train_dir, uri, registry_config.experiment)
    try:
        name, version, model_uri, decision, approved = _register(
            registry, registry_config, gate_config, info, run_id, lora_dir, train_dir, eval_dir, metrics, setup,
            kohya_file, prep_dir, dict(version_tags or {}))
    except Exception as exc:  # the pipeline run shows that registration failed, and why
        if parent:
            end_pipeline_run(registry.client, parent, "FAILED", f"register: {type(exc).__name__}: {exc}")
        raise
    for key, value in {"fitad.registered_model": name, "fitad.registered_version": version,
                       "fitad.gate.decision": decision.decision, **(version_tags or {})}.items():
        registry.client.set_tag(run_id, key, value)
        if parent:
            registry.client.set_tag(parent, key, value)
    if parent:
        end_pipeline_run(registry.client, parent, "FINISHED", final=True)
    result = RegistrationResult(name=name, version=version, model_uri=model_uri, run_id=run_id, approved=approved,
                                gate=decision, out_file=out / RESULT_FILE)
    out.mkdir(parents=True, exist_ok=True)
    aliases = sorted(a for a, v in (registry.client.get_registered_model(name).aliases or {}).items()
                     if str(v) == version)
    atomic_write_json(result.out_file, {**result.as_dict(), "aliases": aliases, "tracking_uri": uri})
    return result


def _register(registry: Registry, registry_config: RegistryConfig, gate_config: GateConfig, info: Any, run_id: str,
              lora_dir: Path, train_dir: Path, eval_dir: Any, metrics: dict[str, float], setup: str | None,
              kohya_file: Any, prep_dir: Any, extra_tags: dict[str, str]) -> tuple[str, str, str, GateDecision, bool]:
    """Log (once per training run), register (one version per training run), gate, maybe approve."""
    name = registry_config.model_name or default_model_name(info.trigger)
    metadata = {"trigger": info.trigger or "", "family": info.family, "base_model": info.base_model,
                "adapter_type": info.adapter_type, "rank": info.rank, "alpha": info.alpha,
                "clip_skip": info.clip_skip, "resolution": info.resolution, "steps": info.steps,
                "use_dora": bool(info.training.get("use_dora")), "base_license": base_license(info.base_model)}
    version_tags = {f"{METRIC_TAG}{k}": v for k, v in metrics.items() if math.isfinite(v)}
    version_tags.update({f"fitad.{k}": v for k, v in metadata.items() if v is not None})
    if setup:
        version_tags[EVAL_SETUP_TAG] = setup
    version_tags.update(extra_tags)
    existing = _version_of_run(registry, name, run_id)
    if existing is not None:  # a re-run of register (new gate settings, a retry): same version, gate again
        version, model_uri = str(existing.version), existing.source
        registry.set_tags(name, version, version_tags)
    else:
        model_uri = log_lora_model(run_id, lora_dir, uri=registry.tracking_uri, base_model=info.base_model,
                                   adapter_type=info.adapter_type, metadata=metadata)
        eval_path = Path(eval_dir) if eval_dir is not None else None
        log_beside(registry.client, run_id, [
            ("lora_files", Path(kohya_file) if kohya_file else None),
            ("prep", Path(prep_dir) / "report.json" if prep_dir else None),
            *[("evaluation", eval_path / f if eval_path else None)
              for f in ("metrics.json", "grid.png", "report.json")],
            ("train", train_dir / "train_summary.json")])
        version = registry.create_version(name, model_uri, run_id, version_tags,
                                          description=f"trigger {info.trigger!r} on {info.base_model}, "
                                                      f"rank {info.rank}")
    approved_version = registry.alias_version(name, APPROVED)
    approved_metrics = None
    if approved_version is not None and approved_version != version:
        approved_tags = dict(registry.client.get_model_version(name, approved_version).tags)
        if approved_tags.get(EVAL_SETUP_TAG) == setup:
            approved_metrics = metrics_from_tags(approved_tags)
    if eval_dir is None:
        decision = GateDecision("skipped", ["no evaluation given"], [], approved_version)
    else:
        decision = decide(metrics, gate_config, approved_metrics, approved_version)
        if approved_version is not None and approved_version != version and approved_metrics is None:
            decision.checks.append({"check": "comparison with the approved version", "passed": True,
                                    "reason": f"skipped: approved v{approved_version} was evaluated another way "
                                              "(CLIP model, prompts or seeds differ), so its metrics do not compare"})
    registry.set_tags(name, version, decision.tags())
    approved = approved_version == version
    if decision.passed and not approved:
        shown = {c["metric"]: c["value"] for c in decision.checks if c.get("metric")}  # each metric once
        registry.approve(name, version, "gate passed: " + ", ".join(f"{k} {v:.3g}" for k, v in shown.items()),
                         by="gate", via="gate")
        approved = True
    return name, version, model_uri, decision, approved


def _version_of_run(registry: Registry, name: str, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        found = registry.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    return min(found, key=lambda v: int(v.version)) if found else None
