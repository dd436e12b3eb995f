"""``fitad mlflow ui``: the MLflow UI on the store this project logs to."""

from __future__ import annotations

import os
import subprocess
import sys

import click


@click.group("mlflow")
def mlflow_group() -> None:
    """The MLflow tracking store ($MLFLOW_TRACKING_URI, default sqlite:///mlflow/mlflow.db)."""


@mlflow_group.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep 127.0.0.1 unless the machine's network is trusted.")
@click.option("--print-only", is_flag=True, help="Print the command instead of starting the UI.")
def ui_cmd(port: int, host: str, print_only: bool) -> None:
    """Start the MLflow UI on HOST:PORT against the project's store and print its URL.

    With a tracking server in MLFLOW_TRACKING_URI there is nothing to start: open the server's own URL.
    """
    from fitad.tracking.store import default_tracking_uri, describe_command, ui_command

    uri = default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        click.echo(f"MLFLOW_TRACKING_URI is a server: open {uri}")
        return
    cmd = ui_command(uri, host, port, python=sys.executable)
    if print_only:
        click.echo(describe_command(cmd))
        return
    click.echo(f"MLflow UI for {uri}: http://{host}:{port}  (Ctrl-C stops it)", err=True)
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    try:
        raise SystemExit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise SystemExit(0) from None


COMMANDS = [mlflow_group]
