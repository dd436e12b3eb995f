"""CLIP text conditioning with A1111-style clip skip: the one implementation training and generation share.

diffusers' own ``clip_skip`` argument reads ``text_encoder.text_model``, which transformers 5 removed from
``CLIPTextModel``; computing the hidden state here works on both and keeps training and rendering identical.
"""

from __future__ import annotations

from typing import Any

import torch


def final_layer_norm(text_encoder: Any) -> torch.nn.Module:
    """The encoder's final LayerNorm (transformers 5 flattened ``CLIPTextModel``; 4.x keeps ``.text_model``)."""
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def clip_hidden_states(text_encoder: Any, input_ids: torch.Tensor, clip_skip: int = 1,
                       norm_owner: Any = None) -> torch.Tensor:
    """Token embeddings for the UNet: 1 = last layer, 2 = penultimate layer + final norm (A1111 convention).

    ``norm_owner`` is the model that holds the final norm when ``text_encoder`` is a wrapper (accelerate).
    """
    if clip_skip < 1:
        raise ValueError(f"clip_skip must be >= 1, got {clip_skip}")
    if clip_skip == 1:
        return text_encoder(input_ids)[0]
    hidden = text_encoder(input_ids, output_hidden_states=True).hidden_states[-clip_skip]
    norm = final_layer_norm(norm_owner if norm_owner is not None else text_encoder)
    weight = getattr(norm, "weight", None)
    if isinstance(norm, torch.nn.LayerNorm) and weight is not None and weight.dtype != hidden.dtype:
        # Mixed precision: a prepared (wrapped) encoder returns float32 hidden states while the frozen
        # norm stays half precision, and this call runs outside the wrapper's autocast. Normalize in
        # the hidden state's dtype, as the encoder's own last-layer path would under autocast.
        bias = norm.bias.to(hidden.dtype) if norm.bias is not None else None
        return torch.nn.functional.layer_norm(hidden, norm.normalized_shape, weight.to(hidden.dtype), bias,
                                              norm.eps)
    return norm(hidden)


def tokenize(tokenizer: Any, prompts: list[str], device: Any = "cpu") -> torch.Tensor:
    """Pad to the tokenizer's window (77 for CLIP) and truncate: callers fit prompts beforehand."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens ``text`` takes in the tokenizer's window, start/end tokens included (no truncation)."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids)
