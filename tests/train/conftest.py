"""Fixtures of the training tests: a few 64 px captioned images and the tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_dataset(root: Path, n: int = 4, size: int = 64, captions: bool = True) -> Path:
    """``root/images/img<i>.png`` (+ ``.txt``): smooth colour gradients, different per image."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        rgb = np.stack([xx * (i + 1) % 1.0, yy, (xx + yy + 0.25 * i) % 1.0], axis=-1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(images / f"img{i}.png")
        if captions:
            (images / f"img{i}.txt").write_text(f"fitadtok girl, picture {i}", encoding="utf-8")
    return root


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run op by op: with the CPU shared, a second OpenMP thread only adds sync stalls
    (measured 70x slower per small matmul under load), so the training tests use one thread."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def tiny_sd15(tiny_models_root) -> str:
    from fitad.zoo import ensure_tiny

    return str(ensure_tiny("tiny-sd15", tiny_models_root))


@pytest.fixture(scope="session")
def tiny_flux(tiny_models_root) -> str:
    from fitad.zoo import ensure_tiny

    return str(ensure_tiny("tiny-flux", tiny_models_root))


@pytest.fixture
def nan_loss_at_call(monkeypatch):
    """``nan_loss_at_call(n)``: SDRecipe.loss returns NaN on its n-th call (a step that diverges)."""
    from fitad.train.sd_lora import SDRecipe

    def patch(n: int) -> None:
        real_loss = SDRecipe.loss
        calls = {"n": 0}

        def loss_that_explodes(self, latents, cond, generator):
            calls["n"] += 1
            value = real_loss(self, latents, cond, generator)
            return value * float("nan") if calls["n"] == n else value

        monkeypatch.setattr(SDRecipe, "loss", loss_that_explodes)

    return patch
