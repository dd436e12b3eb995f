"""``fitad models``: the tiny model zoo."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("models")
def models() -> None:
    """Tiny random models of the real architectures (offline tests and the demo)."""


@models.command("build-tiny")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the models into (default: $FITAD_HOME/models, i.e. ./.fitad/models).")
@click.option("--only", "names", multiple=True,
              type=click.Choice(["tiny-sd15", "tiny-sd15-inpaint", "tiny-flux", "tiny-blip", "tiny-clip"]),
              help="Build only this model (repeatable). Default: all of them.")
@click.option("--force/--reuse", default=True, show_default=True,
              help="Rebuild models that already exist, or keep complete ones.")
def build_tiny(out_dir: Path | None, names: tuple[str, ...], force: bool) -> None:
    """Write tiny-sd15, tiny-sd15-inpaint, tiny-flux, tiny-blip and tiny-clip with save_pretrained.

    The models are seeded (the same bytes every build) and load with the real classes:
    StableDiffusionPipeline, StableDiffusionInpaintPipeline, FluxPipeline,
    BlipForConditionalGeneration and CLIPModel.
    """
    from fitad import zoo

    chosen = names or zoo.TINY_NAMES
    root = zoo.models_root(out_dir)
    click.echo(f"building {len(chosen)} tiny model(s) into {root}")
    total = 0.0

    def report(name: str, seconds: float) -> None:
        nonlocal total
        total += seconds
        size = sum(f.stat().st_size for f in (root / name).rglob("*") if f.is_file())
        click.echo(f"  {name:<18} {seconds:6.1f} s  {size / 1e6:6.2f} MB  {root / name}")

    zoo.build_all(root, tuple(chosen), force=force, progress=report)
    click.echo(f"done in {total:.1f} s")


COMMANDS = [models]
