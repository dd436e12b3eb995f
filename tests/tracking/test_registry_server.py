"""The whole registry flow through a real `mlflow server` over HTTP: log → register → gate → approve →
rollback → load ``models:/NAME@approved`` and render; the same on a PostgreSQL backend where one can run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlflow")

from fitad import zoo  # noqa: E402
from fitad.tracking.config import GateConfig, RegistryConfig  # noqa: E402
from fitad.tracking.lineage import RUN_FILE, open_stage_run  # noqa: E402
from fitad.tracking.register import RegisterError, register_lora  # noqa: E402
from fitad.tracking.registry import Registry, RegistryError  # noqa: E402

GATE = GateConfig(min_clip_t=0.2, min_clip_i=0.6, min_effect_size=0.01, max_effect_size=0.6,
                  max_drop_vs_approved=0.02)


@pytest.fixture(autouse=True)
def _shared_models(shared_models_home, monkeypatch, one_torch_thread):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def trained(root: Path, uri: str, seed: int, parent_inputs: list[Path] | None = None) -> Path:
    """A training output folder as `fitad train` leaves it, its run logged (nested) on the server."""
    train_dir = root / f"train{seed}"
    zoo.build_tiny_lora(train_dir / "lora", seed=seed, trigger="sks")
    (train_dir / "train_summary.json").write_text(json.dumps({"status": "completed", "seed": seed}))
    with open_stage_run("mlflow", "train", train_dir, inputs=parent_inputs or [], tracking_uri=uri,
                        experiment="fitad-test") as run:
        run.log_metrics({"loss": 0.5}, step=1)
    return train_dir


def evaluated(root: Path, name: str, **metrics: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_log_register_gate_approve_rollback_and_render(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, name = mlflow_server, "fitad-flow"
    cfg = RegistryConfig(model_name=name, experiment="fitad-test")

    # v1 passes every floor: it becomes candidate and approved.
    t1 = trained(tmp_path, uri, seed=1)
    r1 = register_lora(cfg, GATE, t1, evaluated(tmp_path, "e1", clip_t=0.30, clip_i=0.80, effect_size=0.20),
                       tmp_path / "reg1", tracking_uri=uri)
    assert (r1.version, r1.approved, r1.gate.decision) == ("1", True, "pass")
    assert json.loads((tmp_path / "reg1" / "registration.json").read_text())["aliases"] == ["approved", "candidate"]

    # v2 is 0.10 below the approved clip_i (more than max_drop 0.02): candidate only, with the reason recorded.
    t2 = trained(tmp_path, uri, seed=2)
    r2 = register_lora(cfg, GATE, t2, evaluated(tmp_path, "e2", clip_t=0.30, clip_i=0.70, effect_size=0.20),
                       tmp_path / "reg2", tracking_uri=uri)
    assert (r2.version, r2.approved, r2.gate.decision) == ("2", False, "fail")
    registry = Registry(uri)
    assert registry.alias_version(name, "approved") == "1" and registry.alias_version(name, "candidate") == "2"
    tags = registry.client.get_model_version(name, "2").tags
    assert tags["fitad.gate.decision"] == "fail" and "clip_i = 0.7000" in tags["fitad.gate.reasons"]
    assert "approved v1" in tags["fitad.gate.reasons"]

    # A reviewer cannot approve a failed version without --force; with it, who/why/forced are recorded.
    with pytest.raises(RegistryError, match="failed the gate.*--force"):
        registry.approve(name, "2", "reviewer likes it", by="ana")
    registry.approve(name, "2", "new style wanted by the client", by="ana", force=True)
    tags = registry.client.get_model_version(name, "2").tags
    assert registry.alias_version(name, "approved") == "2"
    assert (tags["fitad.approved_by"], tags["fitad.approved_forced"]) == ("ana", "True")
    assert tags["fitad.approved_reason"] == "new style wanted by the client"

    # v3 passes against the approved v2 (0.85 >= 0.70 - 0.02) and is approved by the gate.
    t3 = trained(tmp_path, uri, seed=3)
    r3 = register_lora(cfg, GATE, t3, evaluated(tmp_path, "e3", clip_t=0.31, clip_i=0.85, effect_size=0.25),
                       tmp_path / "reg3", tracking_uri=uri)
    assert r3.approved and registry.alias_version(name, "approved") == "3"

    # Rollback walks back through the approvals: 3 -> 2 -> 1, never to a rolled-back version.
    assert registry.rollback(name, "artifacts in faces", by="ben")["to"] == "2"
    assert registry.rollback(name, "client changed mind", by="ben")["to"] == "1"
    with pytest.raises(RegistryError, match="no version was approved before v1"):
        registry.rollback(name, by="ben")
    actions = [(e["version"], e["action"]) for e in registry.history(name)]
    assert actions[:3] == [("1", "approved"), ("1", "replaced"), ("2", "approved")]
    assert ("3", "rolled_back") in actions and ("1", "restored") in actions
    rows = {r.version: r for r in registry.versions(name)}
    assert rows["1"].aliases == ["approved"] and rows["3"].aliases == ["candidate"]
    assert rows["3"].rolled_back_at and rows["1"].metrics["clip_i"] == pytest.approx(0.80)

    # The model is the mlflow.diffusers flavor inside the training run, with the extras beside it.
    client = MlflowClient(uri)
    mv = client.get_model_version(name, "1")
    train_run = json.loads((t1 / RUN_FILE).read_text())
    assert mv.run_id == train_run["run_id"]
    run = client.get_run(mv.run_id)
    assert run.data.tags["mlflow.parentRunId"] == train_run["parent_run_id"]
    assert {f.path for f in client.list_artifacts(mv.run_id, "evaluation")} == {"evaluation/metrics.json"}

    # models:/NAME@approved through the server renders exactly like the local adapter folder of v1.
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    renderer = Renderer(RenderConfig(base_model="tiny-sd15", inpaint_model=None, steps=2))
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri  # removed again by the autouse fixture's monkeypatch
    try:
        served = renderer.txt2img("sks on a poster", width=64, height=64, seed=3, lora=f"models:/{name}@approved")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    local = renderer.txt2img("sks on a poster", width=64, height=64, seed=3, lora=str(t1 / "lora"))
    assert served.lora["registry"] == {"name": name, "version": "1", "alias": "approved"}
    np.testing.assert_array_equal(served.image, local.image)


def test_flavor_pyfunc_renders_offline_from_the_registry(mlflow_server, tmp_path):
    import mlflow
    import pandas as pd
    from PIL import Image

    from fitad.tracking.store import use_tracking_uri

    uri, name = mlflow_server, "fitad-pyfunc"
    t1 = trained(tmp_path, uri, seed=5)
    register_lora(RegistryConfig(model_name=name, experiment="fitad-test"), GATE, t1,
                  evaluated(tmp_path, "e", clip_t=0.3, clip_i=0.8, effect_size=0.2), tmp_path / "reg",
                  tracking_uri=uri)
    with use_tracking_uri(uri):
        loaded = mlflow.diffusers.load_model(f"models:/{name}@approved")
        assert Path(loaded.base_model) == Path(zoo.resolve_model("tiny-sd15")).resolve()
        model = mlflow.pyfunc.load_model(f"models:/{name}@approved")
        pngs = model.predict(pd.DataFrame({"prompt": ["sks"]}),
                             params={"num_inference_steps": 2, "height": 64, "width": 64})
    image = Image.open(io.BytesIO(pngs[0]))
    assert image.size == (64, 64) and np.asarray(image).std() > 0


def test_bad_requests_name_what_is_wrong(mlflow_server, tmp_path):
    uri = mlflow_server
    cfg = RegistryConfig(model_name="fitad-bad", experiment="fitad-test")
    empty = tmp_path / "train-empty"
    empty.mkdir()
    with pytest.raises(RegisterError, match=r"train-empty: no LoRA to register"):
        register_lora(cfg, GATE, empty, evaluated(tmp_path, "e", clip_t=0.3), tmp_path / "r", tracking_uri=uri)
    t1 = trained(tmp_path, uri, seed=7)
    with pytest.raises(RegisterError, match=r"metrics.json: no evaluation metrics"):
        register_lora(cfg, GATE, t1, tmp_path / "no-eval", tmp_path / "r", tracking_uri=uri)
    register_lora(cfg, GATE, t1, evaluated(tmp_path, "e2", clip_t=0.3, clip_i=0.8, effect_size=0.2),
                  tmp_path / "r", tracking_uri=uri)
    registry = Registry(uri)
    with pytest.raises(RegistryError, match=r"fitad-bad has no version 9 \(versions: 1\)"):
        registry.approve("fitad-bad", "9", "typo")
    with pytest.raises(RegistryError, match="no registered model 'fitad-nope'"):
        registry.versions("fitad-nope")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.approve("fitad-bad", "1", "  ")


def test_postgres_backend_registers_and_serves_the_alias(mlflow_server_postgres, tmp_path):
    uri, name = mlflow_server_postgres, "fitad-pg"
    cfg = RegistryConfig(model_name=name, experiment="fitad-test")
    t1 = trained(tmp_path, uri, seed=11)
    r1 = register_lora(cfg, GATE, t1, evaluated(tmp_path, "e1", clip_t=0.3, clip_i=0.8, effect_size=0.2),
                       tmp_path / "r1", tracking_uri=uri)
    t2 = trained(tmp_path, uri, seed=12)
    r2 = register_lora(cfg, GATE, t2, evaluated(tmp_path, "e2", clip_t=0.3, clip_i=0.9, effect_size=0.2),
                       tmp_path / "r2", tracking_uri=uri)
    registry = Registry(uri)
    assert r1.approved and r2.approved and registry.alias_version(name, "approved") == "2"
    assert registry.rollback(name, "pg check")["to"] == "1"
    from fitad.generate.lora_source import resolve_adapter
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        source = resolve_adapter(f"models:/{name}@approved", tmp_path / "cache")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert source.registry["version"] == "1" and source.meta.trigger == "sks"
