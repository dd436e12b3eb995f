"""The `fitad` entry point: every command explains itself and the zoo command builds models."""

from __future__ import annotations

import click
from click.testing import CliRunner

from fitad.cli import cli, main


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, prefix + (name,))


def test_every_command_has_help():
    runner = CliRunner()
    commands = list(_all_commands(cli))
    assert ("models", "build-tiny") in [path for path, _ in commands]
    for path, command in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert command.help, f"fitad {' '.join(path)} has no help text"


def test_build_tiny_cli(tmp_path):
    result = CliRunner().invoke(cli, ["models", "build-tiny", "--out", str(tmp_path), "--only", "tiny-clip"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny-clip" / "config.json").exists()
    assert "tiny-clip" in result.output and "done in" in result.output


def test_unknown_command_exits_nonzero():
    assert main(["no-such-command"]) == 2
