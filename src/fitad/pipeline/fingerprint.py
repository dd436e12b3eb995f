"""What the step cache cannot see for itself: the data behind a URI, and the code and settings the steps run.

Kubeflow (and kfp.local) reuse a step when its component, image and inputs are the same. A folder or a bucket
prefix is the same string after files were added, and params.yaml or the fitad code may change under the same
image tag, so ``fitad pipeline run|submit`` computes fingerprints and passes them as inputs: ``data_version`` to
the fetch step (what is at the URI now), ``prep_version`` to the data steps (the fitad source and the synth and
prep settings) and ``config_version`` to train, export and evaluate (the source and every stage's settings). A
change makes the cache miss from the first step that sees it on; a new base model re-trains without redoing OCR.
On a cluster the fingerprints describe the submitting checkout, so the image should be built from it (a rebuilt
image under the same tag with other code is not seen), and a bucket this machine cannot list gets a unique
``data_version`` (fetch and everything after it run again): give the submitting shell read access to use the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import fitad


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_version(data_uri: str) -> str:
    """A fingerprint of what ``data_uri`` holds now (top-level files: names, sizes, modification times or ETags).

    ``synth:N`` is made by the code (config_version covers it). A folder this machine cannot see (a path on the
    cluster) or a bucket it cannot list gets a unique value: the fetch step then runs, rather than reusing an
    outdated copy.
    """
    if data_uri.startswith("synth:"):
        return data_uri
    if data_uri.startswith("s3://"):
        listing = _s3_listing(data_uri)
        return _digest(listing) if listing is not None else f"unlisted-{time.time_ns()}"
    folder = Path(data_uri.removeprefix("file://"))
    if not folder.is_dir():
        return f"unseen-{time.time_ns()}"
    entries = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())
               if p.is_file() and not p.name.startswith(".")]
    return _digest(entries)


def _s3_listing(uri: str) -> list[tuple[str, int, str]] | None:
    """What fetch would download (keys, sizes, ETags), or None when this machine cannot list it."""
    from fitad.pipeline.data import list_s3

    try:
        _client, _bucket, objects = list_s3(uri)
    except Exception:  # no boto3, no credentials here, no network: the cluster will read it, we cannot
        return None
    return [(o["Key"], o["Size"], o["ETag"]) for o in objects]


def source_digest() -> str:
    """The fitad package's Python source and bundled assets, as installed here."""
    root = Path(fitad.__file__).parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# read only by register, which is never cached: a new gate floor must not re-train
ONLY_REGISTER = ("registry", "gate")


def config_version(params: Any, params_path: str | os.PathLike | None = None, stages: tuple[str, ...] | None = None
                   ) -> str:
    """The code and the resolved settings of ``stages`` (default: all the cached steps read) a run will use."""
    from fitad.config import SynthConfig, load_section

    configs = {stage: dataclasses.asdict(cfg) for stage, cfg in params.stage_configs(params_path).items()
               if stage not in ONLY_REGISTER}
    configs["synth"] = dataclasses.asdict(load_section(SynthConfig, params_path))
    chosen = {k: v for k, v in configs.items() if stages is None or k in stages}
    return _digest({"fitad": fitad.__version__, "source": source_digest(), "configs": chosen})


def prep_version(params: Any, params_path: str | os.PathLike | None = None) -> str:
    """What the data steps (fetch, clean text, crop, caption) depend on besides their inputs."""
    return config_version(params, params_path, stages=("synth", "prep"))
