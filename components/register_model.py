"""Registration: an MLflow model version (alias candidate) through the gate to `approved` (fitad.tracking)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_model(model: Input[Model], kohya: Input[Model], evaluation: Input[Dataset], dataset: Input[Dataset],
                   registration: Output[Artifact], metrics: Output[Metrics], model_name: str, min_clip_t: float,
                   min_clip_i: float, profile: str, experiment: str, kfp_run_id: str, kfp_run_name: str):
    """registration.json (name, version, gate decision and reasons); the version is tagged with this run's id."""
    from fitad.pipeline.steps import plain, register_step, write_metrics

    write_metrics(metrics, register_step(model.path, evaluation.path, registration.path, plain(locals()),
                                         kohya_dir=kohya.path, prep_dir=dataset.path))
