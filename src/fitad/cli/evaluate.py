"""``fitad evaluate``: CLIP-T / CLIP-I / effect-size evaluation of a trained LoRA."""

from __future__ import annotations

from pathlib import Path

import click

from fitad.cli.common import (build_config, config_options, echo_run, tracker_options, tracking_errors,
                              tracking_message)


@click.command("evaluate")
@click.argument("lora")
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@tracker_options()
@click.option("--run-name", default=None, help="MLflow run name (default: 'evaluate-' + OUT_DIR's name).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar over renders.")
@config_options
def evaluate_command(lora: str, dataset_dir: Path, out_dir: Path, tracker: str, experiment: str,
                     run_name: str | None, progress: bool, params_path: Path | None,
                     overrides: tuple[str, ...]) -> None:
    """Score LORA against the training images in DATASET_DIR and write the results to OUT_DIR.

    LORA is a training output directory (with fitad_lora.json), an exported .safetensors or an MLflow model URI
    (models:/NAME@approved). Fixed prompts and seeds are rendered without and with the LoRA; OUT_DIR receives
    metrics.json (clip_t, clip_i, effect_size, pixel_change, ...), scores.csv, report.json, grid.png
    and renders/.

    Settings come from the 'evaluate' section of params.yaml, then --set KEY=VALUE.
    """
    from fitad.evaluate.config import EvalConfig

    config = build_config(EvalConfig, params_path, overrides)

    from fitad.evaluate import EvalError
    from fitad.evaluate.stage import run_evaluation

    try:
        result = run_evaluation(config, lora, dataset_dir, out_dir, tracker=tracker, experiment=experiment,
                                run_name=run_name, show_progress=progress)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from None
    except tracking_errors() as exc:
        raise click.ClickException(tracking_message(exc)) from None
    for name, value in result.metrics.items():
        click.echo(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    click.echo(f"report: {result.report_path}  grid: {result.grid_path}")
    echo_run(out_dir, tracker)


COMMANDS = [evaluate_command]
