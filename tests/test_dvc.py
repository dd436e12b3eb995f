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
    from fitad.evaluate.config import EvalConfig
    from fitad.generate.config import RenderConfig
    from fitad.lora.export import ExportConfig
    from fitad.prep.config import PrepConfig
    from fitad.serve.config import ServeConfig
    from fitad.tracking.config import GateConfig, RegistryConfig
    from fitad.train.config import FluxLoraConfig, SDLoraConfig

    return {c.SECTION: c for c in (SynthConfig, PrepConfig, SDLoraConfig, FluxLoraConfig, ExportConfig,
                                          RenderConfig, AdConfig, RegistryConfig, GateConfig, EvalConfig, ServeConfig)}


def test_every_params_section_validates():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    configs = _section_configs()
    sections = set(params) - {"profile", "profiles"}
    assert sections == set(configs), "params.yaml sections and stage configs differ"
    for profile, layers in params["profiles"].items():
        assert set(layers or {}) <= set(configs), f"profile {profile} names an unknown section"
    for section, cls in configs.items():
        load_section(cls, ROOT / "params.yaml")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_command_parses(name, tmp_path, monkeypatch):
    stage = STAGES[name]
    argv = shlex.split(stage["cmd"])
    assert argv[0] == "fitad"
    # Options that must name an existing file (--kohya) are checked while parsing: the stage's data deps exist
    # when DVC runs it, so lay them out (empty) in a scratch folder and parse there.
    monkeypatch.chdir(tmp_path)
    for dep in stage.get("deps", []):
        if not dep.startswith("src/"):
            path = tmp_path / dep
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
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
        if section in ("profile", "profiles"):  # the profile switch every section reads (fitad.config.section_data)
            continue
        assert section in _section_configs()
    for dep in stage.get("deps", []):
        if dep.startswith("src/"):
            assert (ROOT / dep).exists(), f"stage {name}: dependency {dep} does not exist"
