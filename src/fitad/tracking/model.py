"""A trained LoRA as an MLflow model: MLflow's own ``mlflow.diffusers`` flavor, with what it does not carry beside it.

The flavor stores the adapter folder (``pytorch_lora_weights.safetensors`` in diffusers key names, DoRA
magnitudes included, plus ``fitad_lora.json``) and a reference to the base model; its pyfunc renders PNGs
with ``DiffusionPipeline.from_pretrained(base) + load_lora_weights``. The base reference must load where the
model is served: a hub ID stays an ID, a zoo model or a local folder becomes an absolute path. The logical
name (``tiny-sd15``, ``stablediffusionapi/anything-v5``) goes into the model's metadata and the registry
tags, where fitad's renderer reads it.

LoKr adapters are the one case the flavor cannot serve (it accepts ``adapter_type="lora"`` only, and
``load_lora_weights`` cannot read a PEFT LoKr folder): they are logged as a small pyfunc model
(:class:`FitadAdapterModel`) that renders through fitad's own loader, with the same input/output schema.

Run artifacts beside the model: the kohya ``.safetensors`` (``lora_files/``), the prep report (``prep/``),
the evaluation's metrics, grid and report (``evaluation/``) and the training summary (``train/``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping

from fitad.tracking.store import use_tracking_uri

MODEL_ARTIFACT = "lora_model"

# What a deployment should know about the base model's terms; matched on the lower-cased reference.
_LICENSES = (
    ("flux.1-dev", "flux-1-dev-non-commercial-license (no commercial serving)"),
    ("flux.1-schnell", "apache-2.0"),
    ("flux", "see the FLUX model card"),
    ("tiny-", "apache-2.0 (fitad.zoo random test weights)"),
    ("", "creativeml-openrail-m (SD1.5 family; check the model card)"),
)


def base_license(base_model: str) -> str:
    """The licence a deployment of ``base_model`` is bound by, as far as fitad knows it."""
    lowered = base_model.lower()
    return next(text for key, text in _LICENSES if key in lowered)


def base_reference(base_model: str) -> str:
    """What ``DiffusionPipeline.from_pretrained`` can load: a zoo model's or a local folder's absolute path,
    else the hub ID unchanged."""
    from fitad import zoo

    if base_model in zoo.TINY_NAMES:
        return str(Path(zoo.resolve_model(base_model)).resolve())
    path = Path(base_model).expanduser()
    return str(path.resolve()) if path.exists() else base_model


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(type=DataType.string, name="prompt")]),
        outputs=Schema([ColSpec(type=DataType.binary, name="image")]),
        params=ParamSchema([ParamSpec("num_inference_steps", DataType.integer, 20),
                            ParamSpec("guidance_scale", DataType.double, 7.0),
                            ParamSpec("height", DataType.integer, 512), ParamSpec("width", DataType.integer, 512),
                            ParamSpec("seed", DataType.integer, 0)]))


def pinned_requirements() -> list[str]:
    """What serving the model needs, pinned to this environment (torch without its local ``+cpu`` label)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("diffusers", "transformers", "peft", "safetensors", "accelerate", "torch"):
        try:
            out.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return out


def log_lora_model(run_id: str, lora_dir: str | os.PathLike, *, uri: str, base_model: str, adapter_type: str,
                   metadata: Mapping[str, Any]) -> str:
    """Log ``lora_dir`` into run ``run_id`` as the MLflow model ``lora_model``; return its ``models:/`` URI."""
    import mlflow

    # MLflow 3 files a logged model under the current experiment: name the run's, or it lands in the Default
    # experiment (whose artifacts, for a fresh SQLite store, go to ./mlruns). Not start_run(run_id): that would
    # end the training run again (a new end time; FAILED if logging raised).
    experiment_id = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    with use_tracking_uri(uri, experiment_id):
        if adapter_type == "lora":
            import mlflow.diffusers

            info = mlflow.diffusers.log_model(str(lora_dir), base_model=base_reference(base_model),
                                              name=MODEL_ARTIFACT, run_id=run_id, metadata=dict(metadata),
                                              pip_requirements=pinned_requirements())
        else:
            from mlflow.models import Model

            # Model.log is what mlflow.pyfunc.log_model wraps; it takes the run id (the fluent one does not)
            info = Model.log(None, name=MODEL_ARTIFACT, flavor=mlflow.pyfunc, run_id=run_id,
                             python_model=FitadAdapterModel(), artifacts={"lora": str(lora_dir)},
                             metadata={**metadata, "base_reference": base_reference(base_model)},
                             signature=_signature(), pip_requirements=["fitad", *pinned_requirements()])
    return info.model_uri


def log_beside(client: Any, run_id: str, files: list[tuple[str, Path | None]]) -> list[str]:
    """Log each existing ``(artifact folder, file)`` into run ``run_id``; return what was logged."""
    logged = []
    for folder, path in files:
        if path is not None and Path(path).is_file():
            client.log_artifact(run_id, str(path), folder)
            logged.append(f"{folder}/{Path(path).name}")
    return logged


try:  # the pyfunc base class exists only where MLflow is installed (the track extra)
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object


class FitadAdapterModel(_PythonModel):  # type: ignore[misc, valid-type]
    """pyfunc for adapters the diffusers flavor cannot carry: prompts in, PNG bytes out, via fitad's renderer."""

    def load_context(self, context: Any) -> None:
        from fitad.generate.config import RenderConfig
        from fitad.generate.renderer import Renderer

        base = context.model_config.get("base_model") if context.model_config else None
        meta = _model_metadata(context)
        self._lora = context.artifacts["lora"]
        self._renderer = Renderer(RenderConfig(base_model=base or meta.get("base_reference", ""),
                                               inpaint_model=None))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would derive a schema
        from PIL import Image

        params = params or {}
        prompts = list(model_input["prompt"]) if hasattr(model_input, "columns") else list(model_input)
        out = []
        for prompt in prompts:
            result = self._renderer.txt2img(str(prompt), width=params.get("width"), height=params.get("height"),
                                            steps=params.get("num_inference_steps"),
                                            guidance=params.get("guidance_scale"), seed=int(params.get("seed", 0)),
                                            lora=self._lora)
            buffer = io.BytesIO()
            Image.fromarray(result.image).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out


def _model_metadata(context: Any) -> dict[str, Any]:
    import yaml

    mlmodel = Path(context.artifacts["lora"]).parents[1] / "MLmodel"
    try:
        return dict(yaml.safe_load(mlmodel.read_text(encoding="utf-8")).get("metadata") or {})
    except (OSError, AttributeError, yaml.YAMLError):
        return {}
