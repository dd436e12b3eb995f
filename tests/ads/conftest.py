"""Shared fixtures for the ad tests: one warm tiny renderer per session, real photographs, a tiny LoRA.

The renderer is built on the tiny SD1.5 models cached under the session's ``tiny_models_root`` (local
directories, so ``FITAD_HOME`` does not matter to it). Ads render at ``work_side=64`` with 2 steps; product
segmentation runs at ``segment_max_side=256`` with the OpenCV segmenter named explicitly, so a rembg model
that happens to sit in ``~/.rembg`` cannot change (or slow down) what the tests see.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from fitad import zoo
from fitad.ads.config import AdConfig

FAST = {"work_side": 64, "steps": 2, "segmenter": "opencv", "segment_max_side": 256}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch on one thread (see tests/conftest.py)."""


def ad_config(**overrides) -> AdConfig:
    """An AdConfig for fast tests: 64 px renders, 2 steps, small segmentation; ``overrides`` win."""
    return AdConfig(**{**FAST, **overrides})


@pytest.fixture
def make_config() -> Callable[..., AdConfig]:
    return ad_config


@pytest.fixture(scope="session")
def renderer(tiny_models_root):
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    config = RenderConfig(base_model=str(zoo.ensure_tiny("tiny-sd15", tiny_models_root)),
                          inpaint_model=str(zoo.ensure_tiny("tiny-sd15-inpaint", tiny_models_root)), steps=2)
    return Renderer(config)


@pytest.fixture
def render_calls(renderer, monkeypatch) -> list[str]:
    """Records every txt2img / inpaint / img2img call the session renderer gets during one test."""
    calls: list[str] = []
    for name in ("txt2img", "inpaint", "img2img"):
        original = getattr(renderer, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(renderer, name, wrapper)
    return calls


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory, tiny_models_root) -> Path:
    return zoo.build_tiny_lora(tmp_path_factory.mktemp("ad-lora") / "lora", rank=4, seed=1, root=tiny_models_root)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False  # a test that writes into a shared photo fails loudly
    return array


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """A cup of coffee on a saucer, on a wooden table (600 x 400): the product photo."""
    from skimage import data

    return _frozen(data.coffee())


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A portrait with one frontal face (512 x 512): the person photo."""
    from skimage import data

    return _frozen(data.astronaut())


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    """A cat (451 x 300): no human face."""
    from skimage import data

    return _frozen(data.chelsea())


@pytest.fixture(scope="session")
def rocket() -> np.ndarray:
    """A rocket on a launch pad (640 x 427): no face."""
    from skimage import data

    return _frozen(data.rocket())


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save_kwargs) -> bytes:
    """Image bytes written by Pillow (``mode`` converts first, e.g. CMYK)."""
    image = Image.fromarray(np.ascontiguousarray(array))
    if mode is not None:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()
