"""LoRA fine-tuning of an SD1.5-family or FLUX model (fitad.train.stage.run_training). Asks for a GPU."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from fitad.pipeline import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_lora(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics], trigger: str, family: str,
               base_model: str, rank: int, steps: int, resolution: int, learning_rate: float, profile: str,
               experiment: str, config_version: str):
    """The adapter (lora/), checkpoints, loss.csv and train_summary.json; the loss curve is in MLflow."""
    from fitad.pipeline.steps import plain, train_step, write_metrics

    write_metrics(metrics, train_step(dataset.path, model.path, plain(locals())))
