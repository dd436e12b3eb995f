"""The character-LoRA pipeline's side in fitad: its parameters, its data step and one function per step.

Kubeflow itself lives outside the package (``components/``, ``pipelines/``; fitad never imports kfp): each
component calls one function of :mod:`fitad.pipeline.steps`, which calls the same stage function the CLI and
DVC call. ``IMAGE`` is the container image the steps and the ad service run in (the Dockerfile builds it;
``$FITAD_IMAGE`` names another, e.g. a private registry's copy); ``GPU_IMAGE``, its CUDA variant
(``make image VARIANT=cuda``, ``$FITAD_GPU_IMAGE``), runs the steps that ask for a GPU (train, evaluate).
"""

from __future__ import annotations

import os

from fitad import __version__
from fitad.pipeline.params import PipelineParams, check_params

IMAGE_NAME = "ghcr.io/fit-ad/fitad"
IMAGE = os.environ.get("FITAD_IMAGE") or f"{IMAGE_NAME}:{__version__}"
GPU_IMAGE = os.environ.get("FITAD_GPU_IMAGE") or f"{IMAGE_NAME}:{__version__}-cuda"
PIPELINE_NAME = "character-lora"

__all__ = ["GPU_IMAGE", "IMAGE", "IMAGE_NAME", "PIPELINE_NAME", "PipelineParams", "check_params"]
