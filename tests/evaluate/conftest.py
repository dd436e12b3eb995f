"""Fixtures of the evaluation tests: tiny models, adapters (random, all-zero, exported), a small dataset and one
evaluation run shared by the tests that only read its outputs.

Session fixtures name the tiny models by directory (FITAD_HOME changes per test); function-scoped tests may use
zoo names, which resolve to the session's model cache through the ``FITAD_HOME/models`` link below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fitad import zoo

SIZE = 64
PROMPTS = ["{trigger}", "a photo of {trigger} on an ad poster"]
SEEDS = [0, 3]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(autouse=True)
def _tiny_models_by_name(_fitad_home, tmp_path, tiny_models_root):
    """``tiny-sd15`` / ``tiny-clip`` named in a config resolve to the session's models, not a fresh build."""
    home = tmp_path / ".fitad"
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(Path(tiny_models_root).resolve(), target_is_directory=True)


@pytest.fixture(scope="session")
def models(tiny_models_root) -> dict[str, str]:
    return {"sd15": str(zoo.ensure_tiny("tiny-sd15", tiny_models_root)),
            "clip": str(zoo.ensure_tiny("tiny-clip", tiny_models_root))}


def write_dataset(root: Path, n: int = 3, size: int = SIZE) -> Path:
    """``root/images/img<i>.png`` + captions, as `fitad prep` lays a dataset out: smooth gradients, one per image."""
    images = root / "images"
    images.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        rgb = np.stack([xx * (i + 1) % 1.0, yy, (xx + yy + 0.25 * i) % 1.0], axis=-1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(images / f"img{i}.png")
        (images / f"img{i}.txt").write_text(f"sks character, picture {i}", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("dataset"))


def zero_up_weights(lora_dir: Path) -> Path:
    """Set every ``lora_B`` (up) matrix of a LORA_DIR to zero: the adapter then adds exactly nothing."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = lora_dir / "pytorch_lora_weights.safetensors"
    with safe_open(str(weights), "pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    zeroed = [k for k in tensors if "lora_B" in k]
    assert zeroed, "expected diffusers-named lora_B weights"
    for key in zeroed:
        tensors[key] = tensors[key].zero_()
    save_file(tensors, str(weights), metadata=metadata)
    return lora_dir


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, tiny_models_root) -> dict[str, Path]:
    """``random``: non-zero LoRA (trigger sks, base tiny-sd15); ``zero``: the same with zero up weights;
    ``kohya``: ``random`` exported to a kohya .safetensors."""
    from fitad.lora.export import export_kohya

    root = tmp_path_factory.mktemp("adapters")
    random_dir = zoo.build_tiny_lora(root / "random", rank=4, alpha=8.0, seed=1, root=tiny_models_root)
    zero_dir = zero_up_weights(zoo.build_tiny_lora(root / "zero", rank=4, seed=1, root=tiny_models_root))
    return {"random": random_dir, "zero": zero_dir,
            "kohya": export_kohya(random_dir, root / "random_kohya.safetensors")}


@pytest.fixture(scope="session")
def renderer(models):
    """One warm tiny-sd15 renderer for the tests that inject it (the stage builds its own otherwise)."""
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    return Renderer(RenderConfig(base_model=models["sd15"], inpaint_model=None, steps=2))


@pytest.fixture(scope="session")
def eval_config(models):
    """``eval_config(**overrides)`` -> a small EvalConfig: 2 prompts x 2 seeds, 2 steps, tiny CLIP by directory."""
    from fitad.evaluate import EvalConfig

    def make(**overrides: Any) -> EvalConfig:
        kwargs = dict(clip_model=models["clip"], base_model=models["sd15"], prompts=list(PROMPTS),
                      seeds=list(SEEDS), steps=2, device="cpu")
        kwargs.update(overrides)
        return EvalConfig(**kwargs)

    return make


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, eval_config, adapters, dataset, renderer) -> dict[str, Any]:
    """The random LoRA evaluated once with a DiskTracker: ``{"result", "out", "tracking"}``."""
    from fitad.evaluate import evaluate_lora
    from fitad.tracking import DiskTracker

    out = tmp_path_factory.mktemp("evaluated")
    with DiskTracker(out / "tracking", fresh=True) as tracker:
        result = evaluate_lora(eval_config(), adapters["random"], dataset, out, tracker, show_progress=False,
                               renderer=renderer)
    return {"result": result, "out": out, "tracking": out / "tracking"}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
