"""``fitad export``: a trained adapter directory -> one .safetensors for WebUI, ComfyUI and diffusers."""

from __future__ import annotations

from pathlib import Path

import click

from fitad.cli.common import build_config, config_options
from fitad.lora.export import DTYPES, FORMATS


@click.command("export")
@click.argument("lora_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: beside LORA_DIR, named after it, or after the run folder for "
                   "RUN/lora: RUN/RUN.safetensors, RUN/RUN.diffusers.safetensors). Written atomically.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="kohya (default): WebUI/kohya key names (lora_unet_..., .lora_down/.lora_up, per-module "
                   ".alpha) for A1111, Forge, ComfyUI and diffusers; FLUX uses the transformer.-prefixed "
                   "form with .alpha that ComfyUI and diffusers read; LoKr uses LyCORIS names. "
                   "diffusers: the native PEFT keys and config in one file (keeps DoRA).")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Weight dtype in the file (default keep; float16 halves the size). .alpha stays float32.")
@config_options
def export_command(lora_dir: Path, out: Path | None, fmt: str | None, dtype: str | None,
                   params_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Export LORA_DIR (the training output: pytorch_lora_weights.safetensors + fitad_lora.json, or peft/
    for LoKr) to a single .safetensors file, with kohya metadata (ss_network_dim, ss_network_alpha, base
    model, trigger word). LORA_DIR itself is left as it is: it stays the diffusers-native copy.

    Settings come from the 'export' section of params.yaml, then --set KEY=VALUE, then the options above.
    """
    from fitad.lora.export import ExportConfig, ExportError, run

    config = build_config(ExportConfig, params_path, overrides, format=fmt, dtype=dtype)
    try:
        result = run(config, lora_dir, out)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.summary())


COMMANDS = [export_command]
