"""A throwaway registry for service tests: FITAD_HOME whose zoo names are the session's tiny models, and tiny
LoRAs trained nowhere but registered through the real register stage (one MLflow run each, evaluation passed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

import pytest

PASS = {"clip_t": 0.3, "clip_i": 0.8, "effect_size": 0.2}


def registered_store(root: Path, models_root: "os.PathLike | None", models: Iterable[tuple[str, str, int]],
                     approve: Iterable[str] = ()) -> SimpleNamespace:
    """``models``: (registered name, family, seed) in version order; each name in ``approve`` gets ``approved``
    on its v1. Returns ``uri`` (SQLite store under ``root``) and ``home`` (FITAD_HOME)."""
    from fitad import zoo
    from fitad.tracking.config import GateConfig, RegistryConfig
    from fitad.tracking.lineage import open_stage_run
    from fitad.tracking.register import register_lora
    from fitad.tracking.registry import Registry

    root = Path(root)
    home = root / "home"
    (home / "models").mkdir(parents=True)
    for name in ("tiny-sd15", "tiny-flux"):
        (home / "models" / name).symlink_to(zoo.ensure_tiny(name, models_root), target_is_directory=True)
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FITAD_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for i, (name, family, seed) in enumerate(models):
            train = root / f"train{i}"
            zoo.build_tiny_lora(train / "lora", family=family, seed=seed, root=models_root)
            with open_stage_run("mlflow", "train", train, tracking_uri=uri):
                pass
            (root / f"eval{i}").mkdir()
            (root / f"eval{i}" / "metrics.json").write_text(json.dumps(PASS))
            register_lora(RegistryConfig(model_name=name), GateConfig(enabled=False), train, root / f"eval{i}",
                          root / f"reg{i}", tracking_uri=uri)
        registry = Registry(uri)
        for name in approve:
            registry.approve(name, "1", "test setup", by="test")
    return SimpleNamespace(uri=uri, home=home)
