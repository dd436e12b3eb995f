"""Data preparation: OCR text cleanup, subject crop, captioning, training dataset.

The stage's entry point is :func:`fitad.prep.run.prepare`; each step lives in its own module
(``text``, ``segment``, ``crop``, ``caption``, ``dataset``) and can be called alone.
"""

from __future__ import annotations

from typing import Any

from fitad.prep.config import PrepConfig

__all__ = ["PrepConfig", "PrepReport", "prepare", "evaluate"]


def __getattr__(name: str) -> Any:  # imported lazily: the steps pull in OpenCV and ONNX Runtime
    if name in ("prepare", "PrepReport"):
        from fitad.prep import run
        return getattr(run, name)
    if name == "evaluate":
        from fitad.prep.evaluate import evaluate
        return evaluate
    raise AttributeError(name)
