"""Evaluation: fixed prompts and seeds without and with the LoRA, scored with CLIP (fitad.evaluate.stage)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from fitad.pipeline import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_lora(model: Input[Model], dataset: Input[Dataset], evaluation: Output[Dataset], metrics: Output[Metrics],
                  samples: Output[HTML], profile: str, experiment: str, config_version: str):
    """metrics.json, scores.csv, report.json and grid.png; the grid and scores also as an HTML page for the UI."""
    from fitad.pipeline.steps import evaluate_step, evaluation_html, plain, write_metrics

    write_metrics(metrics, evaluate_step(model.path, dataset.path, evaluation.path, plain(locals())))
    with open(samples.path, "w", encoding="utf-8") as page:
        page.write(evaluation_html(evaluation.path))
