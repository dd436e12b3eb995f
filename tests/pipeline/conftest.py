"""Fixtures of the pipeline tests: the project's params.yaml (read independently with yaml) and a clean
environment (no profile, no Kubeflow run id, no parent run leaking in from the shell)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"


@pytest.fixture(autouse=True)
def _pipeline_env(monkeypatch):
    """params.yaml is the project's whatever the working folder; nothing from the shell shapes a test."""
    from fitad.pipeline.cluster import RUN_ID_ENV

    monkeypatch.setenv("FITAD_PARAMS", str(PARAMS))
    for name in ("FITAD_PROFILE", "FITAD_PARENT_RUN_ID", RUN_ID_ENV, "FITAD_IMAGE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def params_yaml() -> dict:
    """params.yaml as YAML reads it: the reference the code's values are compared with."""
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store for one test, as $MLFLOW_TRACKING_URI."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
