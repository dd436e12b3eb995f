"""Options and helpers shared by the subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from fitad.config import load_section, parse_overrides

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """Add ``--params FILE`` and repeatable ``--set key=value`` to a command."""
    func = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override one config key of this stage (repeatable), e.g. --set rank=16 or, as DVC writes it, "
             "--set train.rank=16. A word the key takes stays that word: --set mixed_precision=no.")(func)
    func = click.option(
        "--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="params.yaml to read (default: ./params.yaml or $FITAD_PARAMS).")(func)
    return func


def build_config(cls: type, params_path: Path | None, overrides: tuple[str, ...],
                 **explicit: Any) -> Any:
    """params.yaml section < --set overrides < explicit CLI options (None means 'not given').

    ``--set`` takes ``key=value`` or ``<section>.key=value``; a prefix naming another section than
    ``cls.SECTION`` is a ConfigError naming both.
    """
    merged = parse_overrides(overrides, section=getattr(cls, "SECTION", None))
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return load_section(cls, params_path, merged)


def tracker_options(default: str = "mlflow") -> Callable[[F], F]:
    """``--tracker mlflow|disk|none`` and ``--experiment``: where a stage reports (one MLflow parent run per
    pipeline run, this stage's run nested under it)."""
    def wrap(func: F) -> F:
        func = click.option("--experiment", default="fitad", show_default=True,
                            help="MLflow experiment; every stage of a pipeline run uses the same one.")(func)
        func = click.option(
            "--tracker", type=click.Choice(["mlflow", "disk", "none"]), default=default, show_default=True,
            help="Where params, metrics and images go: MLflow ($MLFLOW_TRACKING_URI, default "
                 "sqlite:///mlflow/mlflow.db; the run nests under the pipeline run recorded upstream), "
                 "files under OUT_DIR/tracking, or nowhere.")(func)
        return func
    return wrap


def tracking_errors() -> tuple[type[BaseException], ...]:
    """What the tracking store can raise that is the user's to fix (a dead or wrong server, a deleted experiment,
    auth): the doors print these as one line, not a traceback."""
    from mlflow.exceptions import MlflowException

    from fitad.tracking.store import TrackingUnavailableError

    return TrackingUnavailableError, MlflowException


def tracking_message(exc: BaseException) -> str:
    return f"MLflow: {exc.message}" if hasattr(exc, "message") and not isinstance(exc, RuntimeError) else str(exc)


def stage_tracker(kind: str, stage: str, out_dir: Path, inputs: list[Path], experiment: str, *,
                  data: list[Path] | None = None, run_name: str | None = None, tags: dict[str, Any] | None = None,
                  fresh: bool = True) -> Any:
    """The stage's tracker (see fitad.tracking.lineage.open_stage_run); store problems are one-line errors."""
    from fitad.tracking.lineage import open_stage_run

    if kind != "mlflow":
        return open_stage_run(kind, stage, out_dir, fresh=fresh)
    try:
        return open_stage_run(kind, stage, out_dir, inputs=inputs, data=data, experiment=experiment,
                              run_name=run_name, tags=tags, fresh=fresh)
    except tracking_errors() as exc:
        raise click.ClickException(tracking_message(exc)) from None


def echo_run(out_dir: Path, tracker: str) -> None:
    """Print the MLflow run a stage recorded in OUT_DIR (its mlflow_run.json), if it used MLflow."""
    from fitad.tracking.lineage import read_run_file

    record = read_run_file(out_dir) if tracker == "mlflow" else None
    if record and record.get("run_id"):
        click.echo(f"mlflow run: {record['run_id']}")
