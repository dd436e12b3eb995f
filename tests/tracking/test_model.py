"""The logged MLflow model loads and renders offline: FLUX through the mlflow.diffusers flavor, LoKr (which the
flavor cannot carry) through fitad's pyfunc, each checked against a direct render."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlflow")

from fitad import zoo  # noqa: E402
from fitad.tracking.config import GateConfig, RegistryConfig  # noqa: E402
from fitad.tracking.register import register_lora  # noqa: E402
from fitad.tracking.store import use_tracking_uri  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch, shared_models_home, one_torch_thread):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _metrics(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"clip_t": 0.3, "clip_i": 0.8, "effect_size": 0.2}))
    return folder


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_flux_lora_is_a_diffusers_flavor_model_that_renders_offline(store, tmp_path):
    import mlflow
    import pandas as pd

    train = tmp_path / "train"
    zoo.build_tiny_lora(train / "lora", family="flux", rank=4, seed=3)
    result = register_lora(RegistryConfig(model_name="fitad-flux"), GateConfig(), train, _metrics(tmp_path / "e"),
                           tmp_path / "reg", tracking_uri=store)
    with use_tracking_uri(store):
        model = mlflow.models.Model.load(f"models:/fitad-flux/{result.version}")
        assert set(model.flavors) == {"diffusers", "python_function"}
        assert model.metadata["family"] == "flux" and model.metadata["base_model"] == "tiny-flux"
        assert Path(model.flavors["diffusers"]["base_model"]) == Path(zoo.resolve_model("tiny-flux")).resolve()
        pyfunc = mlflow.pyfunc.load_model(f"models:/fitad-flux/{result.version}")
        images = pyfunc.predict(pd.DataFrame({"prompt": ["sks"]}),
                                params={"num_inference_steps": 2, "height": 64, "width": 64})
    image = _png(images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_lokr_is_served_by_fitads_pyfunc_like_a_direct_render(store, tmp_path):
    import mlflow
    import pandas as pd

    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer
    from fitad.train.config import SDLoraConfig
    from fitad.train.sd_lora import train_sd_lora
    from tests.train.conftest import write_dataset

    dataset = write_dataset(tmp_path / "data", n=2, size=64)
    train = tmp_path / "train"
    train_sd_lora(SDLoraConfig(base_model="tiny-sd15", adapter_type="lokr", rank=4, resolution=64, steps=2,
                               checkpoint_every=0, validation_every=0, trigger="sks"), dataset, train,
                  show_progress=False)
    result = register_lora(RegistryConfig(model_name="fitad-lokr"), GateConfig(), train, _metrics(tmp_path / "e"),
                           tmp_path / "reg", tracking_uri=store)
    with use_tracking_uri(store):
        model = mlflow.models.Model.load(f"models:/fitad-lokr/{result.version}")
        assert "diffusers" not in model.flavors and model.metadata["adapter_type"] == "lokr"
        pyfunc = mlflow.pyfunc.load_model(f"models:/fitad-lokr/{result.version}")
        served = pyfunc.predict(pd.DataFrame({"prompt": ["sks on a poster"]}),
                                params={"num_inference_steps": 2, "height": 64, "width": 64, "seed": 4})
    direct = Renderer(RenderConfig(base_model="tiny-sd15", inpaint_model=None)).txt2img(
        "sks on a poster", width=64, height=64, steps=2, seed=4, lora=str(train / "lora"))
    np.testing.assert_array_equal(_png(served[0]), direct.image)
