"""The shared U-Net trainer: device choice, and a few steps on the GPU where there is one."""

import numpy as np
import pytest
import torch

from fitad.prep.unet import build_unet, fit_unet, training_device


def _squares(n: int = 8, side: int = 64, seed: int = 0):
    """Panels with one bright square each; the target is the square."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 3, side, side), -1.0, np.float32)
    y = np.zeros((n, 1, side, side), np.float32)
    for i in range(n):
        top, left = (int(v) for v in rng.integers(0, side - 20, size=2))
        x[i, :, top:top + 20, left:left + 20] = 1.0
        y[i, 0, top:top + 20, left:left + 20] = 1.0
    return x, y, np.ones_like(y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused_clearly():
    assert training_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="sees no GPU"):
        training_device("cuda")


def test_a_few_epochs_on_the_cpu_learn_a_plain_square():
    x, y, valid = _squares()
    model = build_unet(3, (4, 8, 8, 8))
    stats = fit_unet(model, x, y, valid, epochs=30, batch=4, lr=1e-2, crop=64, device="cpu")
    assert stats["epoch"] == 30 and stats["train_iou"] > 0.5


@pytest.mark.gpu
def test_training_on_the_gpu_returns_a_model_on_the_cpu():
    x, y, valid = _squares()
    model = build_unet(3, (4, 8, 8, 8))
    stats = fit_unet(model, x, y, valid, epochs=30, batch=4, lr=1e-2, crop=64, device="cuda")
    assert np.isfinite(stats["loss"]) and stats["train_iou"] > 0.5
    assert all(p.device.type == "cpu" for p in model.parameters())
