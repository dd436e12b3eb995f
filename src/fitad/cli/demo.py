"""``fitad demo``: the whole job on the embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("outputs/demo"), show_default=True, help="Folder for everything the demo writes.")
@click.option("--panels", type=click.IntRange(1, 200), default=6, show_default=True,
              help="Synthetic panels to make and prepare.")
@click.option("--steps", type=click.IntRange(1, 100_000), default=30, show_default=True,
              help="LoRA training steps on tiny-sd15.")
@click.option("--tracker", type=click.Choice(["mlflow", "disk", "none"]), default="mlflow", show_default=True,
              help="Where the stages are logged (mlflow: the local store under mlflow/ unless "
                   "MLFLOW_TRACKING_URI is set; registration and the gate need it).")
def demo(out_dir: Path, panels: int, steps: int, tracker: str) -> None:
    """Run synth → prep → LoRA training → kohya export → evaluation → registry + gate → a render and two ads.

    Nothing is downloaded: the base model is tiny-sd15 from the model zoo (random weights, the real
    architecture), so the rendered image is noise-like; the point is that every stage ran for real.
    """
    from fitad.demo import DemoConfig, run_demo

    summary = run_demo(out_dir, DemoConfig(panels=panels, steps=steps, tracker=tracker), say=click.echo)
    click.echo(f"demo finished in {summary['seconds']} s; summary: {out_dir / 'demo_summary.json'}")
    ads = [summary["steps"][name]["image"] for name in ("product ad", "person ad") if name in summary["steps"]]
    if ads:
        click.echo("ads (PNG + JSON with prompt, timings, copy and hashtags): " + "  ".join(ads))
    registry = summary.get("registry")
    if registry:
        state = "approved" if registry["approved"] else "candidate (the gate did not pass)"
        click.echo(f"registry: {registry['name']} v{registry['version']} is {state}; "
                   f"list versions: fitad registry list {registry['name']}; serve it: make serve")
        uri = registry["tracking_uri"]
        if uri.startswith(("http://", "https://")):
            click.echo(f"MLflow UI: open {uri} (experiment fitad-demo)")
        else:
            click.echo(f"MLflow UI on the demo's store ({uri}): .venv/bin/fitad mlflow ui, then open "
                       "http://127.0.0.1:5000 (experiment fitad-demo: one pipeline run, a nested run per stage)")


COMMANDS = [demo]
