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
