"""Evaluation of a trained LoRA: fixed prompts and seeds rendered without and with it, scored with CLIP.

``evaluate_lora(config, lora, dataset_dir, out_dir, tracker)`` is the stage; ``fitad evaluate`` and the DVC /
Kubeflow steps are doors to it. Heavy imports (torch, transformers, diffusers) happen when it runs.
"""

from fitad.evaluate.config import EvalConfig
from fitad.evaluate.errors import EvalError
from fitad.evaluate.run import EvalResult, evaluate_lora

__all__ = ["EvalConfig", "EvalError", "EvalResult", "evaluate_lora"]
