"""``fitad registry``: list versions, approve one, roll back; every move of `approved` is recorded."""

from __future__ import annotations

import functools
import shutil

import click


def _registry_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from fitad.cli.common import tracking_errors, tracking_message
        from fitad.tracking.registry import RegistryError

        try:
            return func(*args, **kwargs)
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from None
        except tracking_errors() as exc:
            raise click.ClickException(tracking_message(exc)) from None
    return wrapper


def _open():
    from fitad.tracking.registry import Registry

    return Registry(create=False)  # reading or moving aliases never makes an empty store


@click.group("registry")
def registry_group() -> None:
    """The model registry ($MLFLOW_TRACKING_URI, default sqlite:///mlflow/mlflow.db).

    \b
    fitad registry list NAME                           versions, aliases, metrics, gate
    fitad registry approve NAME VERSION --reason TEXT  move `approved` (the service deploys it)
    fitad registry rollback NAME --reason TEXT         back to the previously approved version
    fitad registry history NAME                        every move of `approved`
    """


@registry_group.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_registry_errors
def list_cmd(name: str, as_json: bool) -> None:
    """Versions of NAME with their aliases, key metrics and gate decision."""
    import dataclasses
    import json

    rows = _open().versions(name)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in dataclasses.asdict(r).items() if k != "tags"} for r in rows],
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: {len(rows)} version(s)")
    for column in ("version", "aliases", "created", "clip_t", "clip_i", "effect", "gate", "approved at"):
        table.add_column(column)
    for r in rows:
        metric = lambda k: f"{r.metrics[k]:.3f}" if k in r.metrics else "-"  # noqa: E731
        table.add_row(r.version, ",".join(r.aliases) or "-", r.created, metric("clip_t"), metric("clip_i"),
                      metric("effect_size"), r.gate, (r.approved_at or "-") + (" (rolled back)" if r.rolled_back_at
                                                                              else ""))
    Console(width=max(110, shutil.get_terminal_size().columns)).print(table)


@registry_group.command("approve")
@click.argument("name")
@click.argument("version")
@click.option("--reason", required=True, help="Why; recorded in the version's tags with who and when.")
@click.option("--force", is_flag=True, help="Approve a version that failed the gate (the reason says why).")
@click.option("--by", default=None, help="Who approves (default: $FITAD_USER or user@host).")
@_registry_errors
def approve_cmd(name: str, version: str, reason: str, force: bool, by: str | None) -> None:
    """Move the `approved` alias of NAME to VERSION."""
    event = _open().approve(name, version, reason, by=by, force=force)
    if event["action"] == "unchanged":
        click.echo(f"{name} v{version} is already approved; nothing changed")
        return
    click.echo(f"approved {name} v{event['version']} (was: {event['previous'] or 'none'}) by {event['by']}"
               + (" [forced]" if force else ""))


@registry_group.command("rollback")
@click.argument("name")
@click.option("--reason", default="rollback", show_default=True, help="Why; recorded in the versions' tags.")
@click.option("--by", default=None, help="Who rolls back (default: $FITAD_USER or user@host).")
@_registry_errors
def rollback_cmd(name: str, reason: str, by: str | None) -> None:
    """Move `approved` of NAME back to the version approved before the current one."""
    moved = _open().rollback(name, reason, by=by)
    click.echo(f"rolled back {name}: approved v{moved['from']} -> v{moved['to']}")


@registry_group.command("history")
@click.argument("name")
@_registry_errors
def history_cmd(name: str) -> None:
    """Every recorded move of `approved` for NAME, oldest first."""
    for e in _open().history(name):
        click.echo(f"{e.get('at')}  v{e['version']}  {e.get('action'):<11} by {e.get('by')}: {e.get('reason', '')}")


COMMANDS = [registry_group]
