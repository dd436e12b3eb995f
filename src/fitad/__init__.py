"""Fit-AD: LoRA adapters for diffusion models from a few images, served as an ad-image generator."""

import logging as _logging

__version__ = "0.1.0"

# torchvision is deliberately not installed (it fails to import beside the CPU torch wheel), and
# transformers' PIL image processors are the ones Fit-AD wants: drop its notice about the fallback.
_logging.getLogger("transformers.utils.import_utils").addFilter(
    lambda record: "requires torchvision" not in record.getMessage())
