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


# ---------------------------------------------------------------- S3: moto's real HTTP server

BUCKET = "fitad-panels"
OBJECTS = {
    "panels/one.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
    "panels/two.bin": bytes(reversed(range(256))) * 4,
    "panels/sub/nested.png": b"nested",
    "panels/.hidden": b"hidden",
    "other/elsewhere.png": b"elsewhere",
    "top.png": b"top level of the bucket",
}

@pytest.fixture(scope="module")
def s3_server():
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"moto/boto3 not installed: {exc}")
    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
    except Exception as exc:  # noqa: BLE001 - any reason moto cannot serve is a skip
        pytest.skip(f"moto's server could not start: {type(exc).__name__}: {exc}")
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket="fitad-empty")
    for key, body in OBJECTS.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    yield url
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, tmp_path, s3_server):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true"),
                        ("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config")),
                        ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))):
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL",
                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server
