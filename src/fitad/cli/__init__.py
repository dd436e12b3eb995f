"""The ``fitad`` command: one entry point, one subcommand (or group) per stage.

Each module in this package exposes ``COMMANDS``, a list of click commands/groups, and keeps heavy
imports (torch, diffusers, OCR backends) inside the command bodies so ``fitad --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from fitad import __version__
from fitad.config import ConfigError


class _Main(click.Group):
    def invoke(self, ctx: click.Context):  # clear one-line errors instead of tracebacks for bad input
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fitad")
def cli() -> None:
    """Fit-AD: train LoRA adapters from a few images and render ads with them.

    Every stage reads its section of params.yaml (override the file with --params or $FITAD_PARAMS)
    and accepts --set key=value overrides. Everything runs offline on the embedded defaults.
    """


def _register() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_") or mod.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="fitad", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
