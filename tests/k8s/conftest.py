"""Fixtures for the container image and Kubernetes manifest tests: the repository, the rendered overlays (by
kustomize_lite, no kubectl needed), the Secrets documented in k8s/README.md, and facts read from the project itself
(the version, the image name, BentoML's health routes, the `fitad` CLI's parser)."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from . import kustomize_lite
from .dockerfile_lite import key_values, parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
NAMESPACES = {"base": None, "dev": "fitad-dev", "prod": "fitad"}


def project_version() -> str:
    text = (ROOT / "src" / "fitad" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dockerfile_label(name: str) -> str:
    for ins in parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if ins.keyword == "LABEL" and name in key_values(ins):
            return key_values(ins)[name]
    raise AssertionError(f"the Dockerfile has no LABEL {name}")


def makefile_variable(name: str) -> str:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(name)}\s*\??=\s*(\S+)\s*$", text, re.M)
    assert found, f"the Makefile sets no {name}"
    return found.group(1)


def documented_secrets() -> dict[str, set[str]]:
    """``| `secret` | `KEY` | ...`` rows of the Secrets table in k8s/README.md."""
    out: dict[str, set[str]] = {}
    for line in (K8S / "README.md").read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\|\s*`([a-z0-9][a-z0-9.-]*)`\s*\|\s*`([A-Za-z_][A-Za-z0-9_.-]*)`\s*\|", line)
        if row:
            out.setdefault(row.group(1), set()).add(row.group(2))
    return out


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: kustomize_lite.build(path) for name, path in OVERLAYS.items()}


@pytest.fixture
def objects(rendered):
    """A deep copy of the rendered overlays, for tests that break them on purpose."""
    return copy.deepcopy(rendered)


@pytest.fixture(scope="session")
def version() -> str:
    return project_version()


@pytest.fixture(scope="session")
def fitad_image() -> str:
    return dockerfile_label("org.opencontainers.image.ref.name")


@pytest.fixture(scope="session")
def secrets_doc() -> dict[str, set[str]]:
    return documented_secrets()


@pytest.fixture(scope="session")
def health_routes() -> dict[str, str]:
    """BentoML's own health routes, read from the installed package: path -> "live" or "ready".

    BentoML's app factories register their system routes in ``BaseAppFactory.get_system_routes``; it is called on a
    stand-in whose liveness and readiness endpoints are markers, so each route is classified by the endpoint BentoML
    wires to it (not by its name)."""
    pytest.importorskip("bentoml")
    from bentoml._internal.server.base_app import BaseAppFactory

    live, ready, metrics = object(), object(), object()
    routes = BaseAppFactory.get_system_routes(SimpleNamespace(livez=live, readyz=ready, metrics=metrics))
    out = {r.path: ("live" if r.endpoint is live else "ready") for r in routes if r.endpoint in (live, ready)}
    assert "ready" in out.values() and "live" in out.values(), out
    return out


@pytest.fixture(scope="session")
def parse_fitad():
    """argv (after the program name) -> the parameters the real `fitad` CLI parses from it (nothing runs)."""
    import click

    from fitad.cli import cli

    def parse(argv: list[str]) -> dict:
        parent = click.Context(cli, info_name="fitad")
        command = cli.get_command(parent, argv[0])
        assert command is not None, f"`fitad {argv[0]}` is not a fitad command"
        sub = command.make_context(argv[0], list(argv[1:]), parent=parent)
        return {"command": argv[0], **sub.params}

    return parse
