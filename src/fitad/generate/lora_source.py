"""Where a LoRA comes from: a training output directory, an exported ``.safetensors``, or an MLflow model URI.

``resolve_adapter(ref)`` gives a local path and a cache key that changes when the file changes (size and mtime
of every file) or when the registry answers with another version (``models:/NAME@approved`` after the alias
moved). MLflow models are downloaded once per tracking server, name and version under ``$FITAD_HOME/adapters``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from fitad.lora.export import INFO_FILE, WEIGHTS_FILE
from fitad.lora.load import LoraLoadError, LoraMeta, read_lora_meta

_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclasses.dataclass
class AdapterSource:
    """A resolved adapter reference."""

    ref: str                    # what the caller asked for
    path: Path                  # local directory or file
    key: str                    # cache identity: changes when the file or the registry version changes
    meta: LoraMeta
    registry: dict[str, str] | None = None   # {"name", "version", "alias"} for MLflow model URIs

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ref": self.ref, "path": str(self.path), "format": self.meta.format,
                               "family": self.meta.family, "adapter_type": self.meta.adapter_type,
                               "rank": self.meta.rank, "trigger": self.meta.trigger,
                               "base_model": self.meta.base_model, "clip_skip": self.meta.clip_skip}
        if self.registry:
            out["registry"] = dict(self.registry)
        return out


def _find_adapter(root: Path) -> Path:
    """The adapter inside a downloaded model folder: a LORA_DIR, else a single adapter ``.safetensors``."""
    if root.is_file():
        return root
    for marker in (INFO_FILE, WEIGHTS_FILE):
        hits = sorted(root.rglob(marker), key=lambda p: (len(p.parts), str(p)))
        if hits:
            return hits[0].parent
    files = sorted(root.rglob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    raise LoraLoadError(f"{root}: no LoRA found in the downloaded model (looked for {INFO_FILE}, {WEIGHTS_FILE} "
                        f"or a single .safetensors; found {len(files)} .safetensors files)")


def _file_key(path: Path) -> str:
    """Identity of a local adapter: its path plus size and mtime of every file, so an edited file is reloaded."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha1(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "file:" + digest.hexdigest()[:16]


def _resolve_mlflow(ref: str, cache_dir: Path) -> tuple[Path, str, dict[str, str]]:
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is in the default extras
        raise LoraLoadError(f"{ref}: MLflow model URIs need mlflow (pip install 'fitad[track]')") from None
    from fitad.tracking.store import TrackingUnavailableError, check_reachable, default_tracking_uri, use_tracking_uri

    tracking = default_tracking_uri()  # the project's store (sqlite:///mlflow/mlflow.db) unless a server is named
    registry: dict[str, str] = {}
    uri = ref
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/([^/]+))", ref)
    try:
        with use_tracking_uri(tracking):  # models:/ URIs resolve through MLflow's global registry URI
            if match:
                name, alias, version = match.groups()
                check_reachable(tracking)
                client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
                if alias:
                    version = client.get_model_version_by_alias(name, alias).version
                registry = {"name": name, "version": str(version), "alias": alias or ""}
                uri = f"models:/{name}/{version}"
            elif ref.startswith("models:/"):
                raise LoraLoadError(f"{ref}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
            # two registries may hold the same NAME/VERSION: the cache is keyed by the store too
            target = cache_dir / hashlib.sha1(f"{tracking}|{uri}".encode()).hexdigest()[:16]
            if not (target / ".complete").is_file():
                target.mkdir(parents=True, exist_ok=True)
                mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target), tracking_uri=tracking)
                (target / ".complete").write_text(uri, encoding="utf-8")
    except MlflowException as exc:
        raise LoraLoadError(f"{ref}: {exc.message}") from None
    except TrackingUnavailableError as exc:
        raise LoraLoadError(f"{ref}: {exc}") from None
    key = f"mlflow:{tracking}|{uri}" if registry else _file_key(target)
    return _find_adapter(target), key, registry


def resolve_adapter(ref: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> AdapterSource:
    """Turn a LoRA reference into a local path with a cache key; raises LoraLoadError naming the reference."""
    text = str(ref)
    registry = None
    if text.startswith(_MLFLOW_SCHEMES):
        from fitad.zoo import fitad_home

        path, key, registry = _resolve_mlflow(text, Path(cache_dir or fitad_home() / "adapters"))
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise LoraLoadError(f"{text}: no such LoRA file or directory")
        key = _file_key(path)
    return AdapterSource(ref=text, path=path, key=key, meta=read_lora_meta(path), registry=registry or None)
