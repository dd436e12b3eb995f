"""``fitad register``: a trained LoRA into the model registry, through the evaluation gate."""

from __future__ import annotations

from pathlib import Path

import click

from fitad.cli.common import config_options, tracking_errors, tracking_message


@click.command("register")
@click.argument("train_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("eval_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Registered model name (default: registry.model_name, else fitad-<trigger>).")
@click.option("--kohya", "kohya_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The exported kohya .safetensors, logged beside the model for WebUI/ComfyUI users.")
@click.option("--prep-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The prepared dataset folder; its report.json is logged beside the model.")
@config_options
def register_command(train_dir: Path, eval_dir: Path, out_dir: Path, name: str | None, kohya_file: Path | None,
                     prep_dir: Path | None, params_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Log TRAIN_DIR/lora as an MLflow model (mlflow.diffusers flavor) in its training run, register it as a
    new version with the `candidate` alias, and run the gate on EVAL_DIR/metrics.json.

    The gate (params.yaml `gate:`) checks the metrics against fixed floors and against the version that is
    `approved` now; only when every check passes does `approved` move to the new version. The decision and
    its reasons are version tags. OUT_DIR/registration.json records the outcome.
    Settings: params.yaml `registry:` and `gate:`; --set registry.KEY=V or gate.KEY=V.
    """
    from fitad.config import load_section, parse_overrides
    from fitad.lora.load import LoraLoadError
    from fitad.tracking.config import GateConfig, RegistryConfig
    from fitad.tracking.register import RegisterError, register_lora
    from fitad.tracking.registry import RegistryError

    sets = parse_overrides(overrides)
    registry_cfg = load_section(RegistryConfig, params_path,
                                {**_section(sets, "registry"), **({"model_name": name} if name else {})})
    gate_cfg = load_section(GateConfig, params_path, _section(sets, "gate"))
    try:
        result = register_lora(registry_cfg, gate_cfg, train_dir, eval_dir, out_dir, kohya_file=kohya_file,
                               prep_dir=prep_dir)
    except (RegisterError, RegistryError, LoraLoadError) as exc:
        raise click.ClickException(str(exc)) from None
    except tracking_errors() as exc:
        raise click.ClickException(tracking_message(exc)) from None
    click.echo(f"registered {result.name} v{result.version} ({result.model_uri}), alias candidate")
    click.echo(f"gate: {result.gate.decision}" + (f" - {'; '.join(result.gate.reasons)}" if result.gate.reasons else ""))
    click.echo(f"approved: v{result.version}" if result.approved else
               f"approved: unchanged (approve by hand: fitad registry approve {result.name} {result.version} "
               "--reason TEXT)")


def _section(sets: dict, section: str) -> dict:
    from fitad.config import ConfigError

    out = {}
    for key, value in sets.items():
        prefix, _, rest = key.partition(".")
        if not rest:
            raise ConfigError(f"--set {key}=...: name the section, registry.{key} or gate.{key}")
        if prefix == section:
            out[rest] = value
        elif prefix not in ("registry", "gate"):
            raise ConfigError(f"--set {key}=...: this command reads sections registry and gate, not {prefix!r}")
    return out


COMMANDS = [register_command]
