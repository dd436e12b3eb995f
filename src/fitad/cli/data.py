"""``fitad data``: make and inspect raw data sets."""

from __future__ import annotations

from pathlib import Path

import click

from fitad.cli.common import build_config, config_options


@click.group("data")
def data() -> None:
    """Make raw data sets (synthetic manga/webtoon panels with ground truth)."""


@data.command("synth")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/raw/synth"), show_default=True,
              help="Folder to write panel_NNNN.png/.json and masks/ into (created if missing).")
@click.option("--n", type=int, default=None,
              help="Number of panels to make [params.yaml synth.n, default 24].")
@click.option("--seed", type=int, default=None,
              help="Base seed; panel i uses seed + i, so a panel does not depend on --n "
                   "[synth.seed, default 0].")
@click.option("--min-side", type=int, default=None,
              help="Smallest panel side in pixels [synth.min_side, default 512].")
@click.option("--max-side", type=int, default=None,
              help="Largest panel side in pixels [synth.max_side, default 1024].")
@click.option("--max-characters", type=int, default=None,
              help="Most figures per panel, 1-4 [synth.max_characters, default 2].")
@click.option("--text-probability", type=float, default=None,
              help="Chance that a panel has bubbles and sound effects, 0-1 "
                   "[synth.text_probability, default 0.9].")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
@config_options
def synth(out_dir: Path, n: int | None, seed: int | None, min_side: int | None,
          max_side: int | None, max_characters: int | None, text_probability: float | None,
          progress: bool, params_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Draw synthetic manga/webtoon panels with exact text boxes and character masks.

    Each panel has a plain, screentone or cluttered background, cel-shaded figures, speech
    bubbles with Korean or English lines and sound-effect lettering. Same seed, same bytes.
    Options given here win over --set, which wins over the synth section of params.yaml.
    """
    from fitad.config import SynthConfig
    from fitad.synth import background_counts, synthesize

    config = build_config(SynthConfig, params_path, overrides, n=n, seed=seed, min_side=min_side,
                          max_side=max_side, max_characters=max_characters,
                          text_probability=text_probability)
    panels = synthesize(config, out_dir, progress=progress)
    click.echo(f"wrote {len(panels)} panels (seeds {config.seed}..{config.seed + config.n - 1}) "
               f"to {out_dir}")
    for kind, count in sorted(background_counts(panels).items()):
        click.echo(f"  {kind}: {count}")


@data.command("synth-styles")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/raw/synth-styles"), show_default=True,
              help="Folder to write panel_NNNN.png/.json and masks/ into (created if missing).")
@click.option("--n", type=click.IntRange(1, 100_000), default=40, show_default=True,
              help="Number of panels to make.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Base seed; panel i uses seed + i (dev) or 1000003 + seed + i (holdout), so a "
                   "panel does not depend on --n.")
@click.option("--split", type=click.Choice(["dev", "holdout"]), default="dev", show_default=True,
              help="dev: panels you may look at and tune the prep stage on. holdout: panels never used "
                   "for tuning, only for the final measurement; they have their own seed range "
                   "(1000003 + seed + i) and extra fonts the dev split never uses (Nanum Pen Script, "
                   "NanumSquare, NanumSquareRound, where installed).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
def synth_styles(out_dir: Path, n: int, seed: int, split: str, progress: bool) -> None:
    """Draw a second, independent set of synthetic comic panels with exact ground truth.

    Made to measure text removal and subject cropping on panels they were not tuned on: line-art
    city, focus-line, room, sky, screentone and plain backgrounds; 1-3 skeleton figures drawn as
    outlined strokes (some crossed by a balloon); speech balloons, captions, vertical Korean
    columns and rotated sound effects in other fonts. Writes panel_NNNN.png, panel_NNNN.json
    (text boxes and polygons, character boxes and masks) and masks/. Same seed and split, same bytes.
    """
    import json
    from collections import Counter

    from fitad.synth_styles import HOLDOUT_SEED_OFFSET, synthesize_styles

    paths = synthesize_styles(out_dir, n, seed=seed, split=split, progress=progress)
    first = seed + (HOLDOUT_SEED_OFFSET if split == "holdout" else 0)
    click.echo(f"wrote {len(paths)} {split} panels (seeds {first}..{first + n - 1}) to {out_dir}")
    backgrounds = Counter(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["background"]
                          for path in paths)
    for kind, count in sorted(backgrounds.items()):
        click.echo(f"  {kind}: {count}")


COMMANDS = [data]
