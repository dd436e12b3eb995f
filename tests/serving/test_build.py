"""``bentoml build`` of serving/bentofile.yaml works offline (lock_packages: false), and ``fitad serve`` is a door."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import BENTOML, ROOT

pytest.importorskip("bentoml")


def test_bentoml_build_offline(tmp_path):
    work = tmp_path / "serving"            # a copy: the build context holds nothing but the service
    shutil.copytree(ROOT / "serving", work, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true",
           "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1"}
    try:
        out = subprocess.run([str(BENTOML), "build", "."], cwd=work, env=env,
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("bentoml build took more than 60 s on this machine")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    bentos = list((tmp_path / "bentoml-home" / "bentos" / "fitad-ads").glob("*/bento.yaml"))
    assert bentos and "service: service:AdService" in bentos[0].read_text()
    assert (bentos[0].parent / "src" / "service.py").is_file()


def test_fitad_serve_is_a_door_without_bentoml():
    code = ("import sys; from fitad.cli import cli; import fitad.cli.serve; "
            "assert 'bentoml' not in sys.modules, 'src/fitad must not import bentoml'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    help_text = subprocess.run([str(Path(sys.executable).with_name("fitad")), "serve", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert "--port" in help_text and "--params" in help_text
