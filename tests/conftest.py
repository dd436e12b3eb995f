"""Test-wide settings: offline model hub, no network, tiny models built once per session."""

from __future__ import annotations

import os
import socket

# Before anything imports huggingface_hub / transformers / diffusers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import pytest  # noqa: E402

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    """Fail any connection that leaves this machine (a model hub download attempt, say)."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")
                                      or self.family == socket.AF_UNIX):
        raise RuntimeError(f"tests must not reach the network (tried {address!r})")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory) -> "os.PathLike":
    """Folder under which fitad.zoo.ensure_tiny(name, root) caches the tiny models for this session.

    Set FITAD_TEST_MODELS to reuse a folder across runs (it is rebuilt only when incomplete).
    """
    from pathlib import Path

    shared = os.environ.get("FITAD_TEST_MODELS")
    return Path(shared) if shared else tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(autouse=True)
def _fitad_home(tmp_path, monkeypatch, tiny_models_root):
    """Each test gets its own FITAD_HOME; tiny models come from the session cache via ensure_tiny."""
    monkeypatch.setenv("FITAD_HOME", str(tmp_path / ".fitad"))
    yield


@pytest.fixture(scope="session")
def one_torch_thread():
    """Torch on one thread for a test package: tiny pipelines run many small ops, and on the shared 2-core CPU
    a second thread only adds sync stalls. Packages opt in with an autouse fixture that requests this one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
