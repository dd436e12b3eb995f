"""CLIP embeddings and the scores built on them: CLIP-T (image vs prompt), CLIP-I (image vs training images).

``ClipScorer(name)`` loads a ``CLIPModel`` and its ``CLIPProcessor`` (a zoo name such as ``tiny-clip``, a local
directory or a hub ID such as ``openai/clip-vit-large-patch14``) and returns L2-normalised embeddings, so a
dot product is a cosine similarity. The score functions below take those unit vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fitad.evaluate.errors import EvalError

if TYPE_CHECKING:
    import torch

BATCH = 16


def _features(output: Any) -> "torch.Tensor":
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    return output if hasattr(output, "ndim") else output.pooler_output


class ClipScorer:
    """A CLIP model kept loaded; ``embed_images`` / ``embed_texts`` give unit-length float64 rows."""

    def __init__(self, name: str, *, device: str = "auto", local_files_only: bool = True,
                 field: str = "evaluate.clip_model") -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging as transformers_logging

        from fitad import zoo

        transformers_logging.disable_progress_bar()  # "Loading weights" bars are noise in a stage log

        if device == "cuda" and not torch.cuda.is_available():
            raise EvalError("evaluate.device = 'cuda' but no CUDA device is available; use cpu or auto")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.name = name
        try:
            path = zoo.resolve_model(name)
        except FileNotFoundError as exc:
            raise EvalError(f"{field}: {exc}") from None
        try:
            self.processor = CLIPProcessor.from_pretrained(path, local_files_only=local_files_only)
            self.model = CLIPModel.from_pretrained(path, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise EvalError(f"{field}: {zoo.describe_missing_model(name, exc)}") from None
        self.model.to(self.device).eval()
        self.path = path

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N x D unit embeddings of H x W x 3 uint8 images (resized and cropped by the CLIP processor)."""
        import torch
        from PIL import Image

        rows = []
        for start in range(0, len(images), BATCH):
            batch = [Image.fromarray(image) for image in images[start:start + BATCH]]
            inputs = self.processor(images=batch, return_tensors="pt")
            with torch.no_grad():
                feats = _features(self.model.get_image_features(
                    pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype)))
            rows.append(feats.float().cpu().numpy())
        return _unit(np.concatenate(rows) if rows else np.zeros((0, self.dim)))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """N x D unit embeddings of prompts (cut to the text encoder's 77-token window)."""
        import torch

        rows = []
        for start in range(0, len(texts), BATCH):
            inputs = self.processor(text=list(texts[start:start + BATCH]), return_tensors="pt", padding=True,
                                    truncation=True)
            with torch.no_grad():
                feats = _features(self.model.get_text_features(
                    input_ids=inputs["input_ids"].to(self.device),
                    attention_mask=inputs["attention_mask"].to(self.device)))
            rows.append(feats.float().cpu().numpy())
        return _unit(np.concatenate(rows) if rows else np.zeros((0, self.dim)))

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def pairwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row i's cosine with row i (same-length unit embeddings)."""
    return np.sum(a * b, axis=1)


def mean_cosine_to_set(images: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Per image: the mean cosine with every reference embedding (CLIP-I of one render)."""
    return (images @ references.T).mean(axis=1)


def pixel_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, as a fraction of 255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() / 255.0)
