"""The pipeline's first step: bring the raw images named by a data URI into a folder.

``synth:N`` writes N synthetic panels (the embedded defaults: no data needed), a folder path (a volume mounted
into the pod, or a local folder for a laptop run) is copied, ``s3://bucket/prefix`` is downloaded from any
S3-compatible store (AWS, MinIO; credentials and endpoint from the usual ``AWS_*`` variables, or
``MLFLOW_S3_ENDPOINT_URL`` as MLflow uses it). Only the top level is taken, as the prep stage reads it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from fitad.fsutil import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"
# records a stage writes beside its outputs: an earlier run's copy must not pass for this run's (lineage)
RESERVED = {MANIFEST, "mlflow_run.json"}


class DataSourceError(RuntimeError):
    """The data URI cannot be read (missing folder, no images, a store that refuses)."""


def fetch_images(data_uri: str, out_dir: str | os.PathLike, *, params_path: str | os.PathLike | None = None,
                 seed: int | None = None) -> dict[str, Any]:
    """Fill ``out_dir`` with the files ``data_uri`` names; returns (and writes as manifest.json) what came."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if data_uri.startswith("synth:"):
        files = _synthesize(int(data_uri[len("synth:"):]), out, params_path, seed)
    elif data_uri.startswith("s3://"):
        files = _download_s3(data_uri, out)
    else:
        files = _copy_folder(Path(data_uri.removeprefix("file://")), out)
    manifest = {"stage": "fetch", "data_uri": data_uri, "files": len(files),
                "bytes": sum((out / f).stat().st_size for f in files), "names": sorted(files),
                "elapsed_s": round(time.perf_counter() - started, 3)}
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def _synthesize(count: int, out: Path, params_path: Any, seed: int | None) -> list[str]:
    from fitad.config import SynthConfig, load_section
    from fitad.synth import synthesize

    config = load_section(SynthConfig, params_path, {"n": count, **({"seed": seed} if seed is not None else {})})
    panels = synthesize(config, out, progress=False)
    return [p.name for p in panels]


def _copy_folder(folder: Path, out: Path) -> list[str]:
    if not folder.is_dir():
        raise DataSourceError(f"data folder {folder} does not exist (is the volume mounted?)")
    if folder.resolve() == out.resolve():
        raise DataSourceError(f"data folder {folder} is the output folder")
    names = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in RESERVED:
            shutil.copyfile(path, out / path.name)
            names.append(path.name)
    if not names:
        raise DataSourceError(f"data folder {folder} holds no files")
    return names


def list_s3(uri: str) -> tuple[Any, str, list[dict[str, Any]]]:
    """The client, the bucket and the objects ``fetch_images`` takes from ``s3://bucket/prefix``: the top level of
    the prefix, without hidden files and stage records. Raises DataSourceError for what cannot be read."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise DataSourceError(f"{uri}: reading s3:// needs boto3 (pip install 'fitad[cluster]')") from None
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise DataSourceError(f"{uri}: no bucket named (s3://bucket/prefix)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    client = boto3.client("s3", endpoint_url=endpoint)
    objects = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]
                if name and not name.startswith(".") and "/" not in name and name not in RESERVED:
                    objects.append({**item, "Name": name})
    except (BotoCoreError, ClientError) as exc:
        raise DataSourceError(f"{uri}: {exc}") from None
    return client, bucket, objects


def _download_s3(uri: str, out: Path) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    client, bucket, objects = list_s3(uri)
    try:
        for item in objects:
            atomic_write_bytes(out / item["Name"], client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    except (BotoCoreError, ClientError) as exc:
        raise DataSourceError(f"{uri}: {exc}") from None
    if not objects:
        raise DataSourceError(f"{uri}: no files under this prefix")
    return [item["Name"] for item in objects]
