"""``fitad serve``: start the BentoML ad service (``serving/service.py``) on this machine.

A thin door: it runs ``bentoml serve serving.service:AdService`` as a child process in the project root (the
folder holding params.yaml) and forwards SIGINT/SIGTERM to it. bentoml is never imported here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click


def _bentoml_command() -> list[str]:
    script = Path(sys.executable).with_name("bentoml")
    if script.exists():
        return [str(script)]
    found = shutil.which("bentoml")
    return [found] if found else [sys.executable, "-m", "bentoml"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--params", "params_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="params.yaml to read (default: $FITAD_PARAMS or the project's params.yaml)")
def serve_command(host: str, port: int, params_path: str | None) -> None:
    """Start the ad service (txt2img, product/person/advanced/compose ads, copy) over HTTP."""
    from fitad.tracking.store import project_root

    root = project_root()
    if not (root / "serving" / "service.py").is_file():
        raise click.ClickException(f"serving/service.py not found under {root}: run fitad serve in the project")
    env = dict(os.environ)
    if params_path:
        env["FITAD_PARAMS"] = str(Path(params_path).resolve())
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [*_bentoml_command(), "serve", "serving.service:AdService", "--host", host, "--port", str(port)]
    click.echo(f"fitad serve: http://{host}:{port}/ (the ad maker page; API routes beside it, ready when /readyz "
               "says 200; Ctrl-C stops it)")
    proc = subprocess.Popen(cmd, cwd=root, env=env)

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise SystemExit(code)


COMMANDS = [serve_command]
