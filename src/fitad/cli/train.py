"""``fitad train``: LoRA training of an SD1.5-family or FLUX model on a prepared dataset."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fitad.cli.common import (build_config, config_options, echo_run, tracker_options, tracking_errors,
                              tracking_message)

ADAPTERS = {"lora": ("lora", False), "dora": ("lora", True), "lokr": ("lokr", None)}


@click.command("train")
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--family", type=click.Choice(["sd15", "flux"]), default="sd15", show_default=True,
              help="Model family: sd15 reads the 'train' section of params.yaml, flux reads 'train_flux'.")
@click.option("--base", "base_model", default=None, metavar="MODEL",
              help="Base model: hub ID, local diffusers directory, or a tiny model (tiny-sd15, tiny-flux).")
@click.option("--steps", type=int, default=None, help="Number of optimizer steps to train to.")
@click.option("--rank", type=int, default=None, help="Adapter rank.")
@click.option("--alpha", type=float, default=None, help="Adapter alpha (default: equal to rank).")
@click.option("--adapter", type=click.Choice(sorted(ADAPTERS)), default=None,
              help="Adapter type: lora, dora (weight-decomposed LoRA) or lokr (Kronecker, PEFT format).")
@click.option("--resolution", type=int, default=None, help="Training resolution in pixels (square side).")
@click.option("--batch-size", type=int, default=None, help="Images per optimizer micro-step.")
@click.option("--learning-rate", "--lr", "learning_rate", type=float, default=None, help="Peak learning rate.")
@click.option("--resume", is_flag=True,
              help="Continue from the newest checkpoint under OUT_DIR/checkpoints (same losses as an "
                   "uninterrupted run). Refused, with a list of the changes, when a setting that changes "
                   "what a step computes differs from the checkpoint's.")
@click.option("--extend-steps", is_flag=True,
              help="With --resume: allow --steps beyond the checkpoint run's total. The LR schedule is "
                   "recomputed for the new total, so from the resume point on the learning rate differs "
                   "from the original run's (unless lr_scheduler is constant).")
@tracker_options()
@click.option("--run-name", default=None, help="MLflow run name (default: OUT_DIR's name).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar with loss and seconds per step.")
@config_options
def train_command(dataset_dir: Path, out_dir: Path, family: str, base_model: str | None, steps: int | None,
                  rank: int | None, alpha: float | None, adapter: str | None, resolution: int | None,
                  batch_size: int | None, learning_rate: float | None, resume: bool, extend_steps: bool,
                  tracker: str, experiment: str, run_name: str | None, progress: bool, params_path: Path | None,
                  overrides: tuple[str, ...]) -> None:
    """Train a LoRA adapter on DATASET_DIR and write it to OUT_DIR/lora.

    DATASET_DIR holds images/<stem>.png with images/<stem>.txt captions and/or metadata.jsonl, as the
    prepare stage writes them. OUT_DIR receives lora/ (pytorch_lora_weights.safetensors and
    fitad_lora.json), checkpoints/, validation/, metrics.jsonl and train_summary.json.

    Settings come from params.yaml, then --set KEY=VALUE, then the options above.
    Several GPUs: accelerate launch --num_processes N $(which fitad) train DATASET_DIR OUT_DIR ...
    """
    from fitad.train.config import CONFIG_BY_FAMILY

    adapter_type, use_dora = ADAPTERS[adapter] if adapter else (None, None)
    config = build_config(CONFIG_BY_FAMILY[family], params_path, overrides, base_model=base_model, steps=steps,
                          rank=rank, alpha=alpha, adapter_type=adapter_type, use_dora=use_dora,
                          resolution=resolution, batch_size=batch_size, learning_rate=learning_rate)

    from fitad.train.data import DatasetError
    from fitad.train.loop import TrainingDivergedError
    from fitad.train.runtime import ModelNotFoundError
    from fitad.train.stage import run_training

    if extend_steps and not resume:
        raise click.UsageError("--extend-steps only applies with --resume")
    if int(os.environ.get("RANK", "0")) != 0:
        tracker = "none"  # under `accelerate launch` only the main process reports
    try:
        result = run_training(config, family, dataset_dir, out_dir, tracker=tracker, experiment=experiment,
                              run_name=run_name, resume=resume, extend_steps=extend_steps, show_progress=progress)
    except (DatasetError, ModelNotFoundError, TrainingDivergedError) as exc:
        raise click.ClickException(str(exc)) from None
    except tracking_errors() as exc:
        raise click.ClickException(tracking_message(exc)) from None
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    click.echo(f"adapter: {result.adapter_dir}  steps: {result.steps}  final loss: {loss}  "
               f"steps/s: {result.steps_per_s:.2f}  peak memory: {result.peak_memory_mb:.0f} MB "
               f"({result.memory_kind})")
    echo_run(out_dir, tracker)


COMMANDS = [train_command]
