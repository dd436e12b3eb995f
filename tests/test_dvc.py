"""dvc.yaml stays in step with the code: every stage runs a real fitad command with valid params."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
import yaml

from fitad.cli import cli
from fitad.config import load_section

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _section_configs():
    from fitad.ads.config import AdConfig
    from fitad.config import SynthConfig
    from fitad.generate.config import RenderConfig
    from fitad.lora.export import ExportConfig
    from fitad.prep.config import PrepConfig
    from fitad.train.config import FluxLoraConfig, SDLoraConfig

    return {c.SECTION: c for c in (SynthConfig, PrepConfig, SDLoraConfig, FluxLoraConfig, ExportConfig,
                                          RenderConfig, AdConfig)}


def test_every_params_section_validates():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    configs = _section_configs()
    assert set(params) == set(configs), "params.yaml sections and stage configs differ"
    for section, cls in configs.items():
        load_section(cls, ROOT / "params.yaml")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_command_parses(name):
    stage = STAGES[name]
    argv = shlex.split(stage["cmd"])
    assert argv[0] == "fitad"
    # Walk the click tree the way `fitad` would, then parse the leaf's arguments without running it.
    ctx = cli.make_context("fitad", argv[1:], resilient_parsing=False)
    command, args = cli, ctx.protected_args + ctx.args
    while isinstance(command, click.Group):
        sub_ctx = command.make_context(command.name, list(args)) if command is not cli else ctx
        _, sub, rest = command.resolve_command(sub_ctx, list(sub_ctx.protected_args + sub_ctx.args))
        command, args = sub, rest
        if not isinstance(command, click.Group):
            command.make_context(command.name, list(args))  # raises on unknown options / missing args
    for section in stage.get("params", []):
        assert section in _section_configs()
    for dep in stage.get("deps", []):
        if dep.startswith("src/"):
            assert (ROOT / dep).exists(), f"stage {name}: dependency {dep} does not exist"
