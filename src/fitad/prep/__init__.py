"""Data preparation: OCR text cleanup, subject crop, captioning, training dataset.

The stage's entry point is :func:`fitad.prep.run.prepare`; each step lives in its own module
(``text``, ``segment``, ``crop``, ``caption``, ``dataset``) and can be called alone.
:func:`clean_text`, :func:`crop_subjects` and :func:`caption_dataset` (``fitad.prep.stages``) run the
same steps as three folder-to-folder stages, e.g. one pipeline step each.
"""

from __future__ import annotations

from typing import Any

from fitad.prep.config import PrepConfig

__all__ = ["PrepConfig", "PrepError", "PrepReport", "StageReport", "caption_dataset", "clean_text", "crop_subjects",
           "evaluate", "prepare"]

_STAGES = ("clean_text", "crop_subjects", "caption_dataset", "StageReport")


def __getattr__(name: str) -> Any:  # imported lazily: the steps pull in OpenCV and ONNX Runtime
    if name in ("prepare", "PrepReport", "PrepError"):
        from fitad.prep import run
        return getattr(run, name)
    if name in _STAGES:
        from fitad.prep import stages
        return getattr(stages, name)
    if name == "evaluate":
        from fitad.prep.evaluate import evaluate
        return evaluate
    raise AttributeError(name)
