"""What a training step consumes: latents and text conditionings, encoded once up front or per batch.

With ``cache_latents`` every image (and its flip, with ``random_flip``) goes through the VAE once; with
``cache_text_embeddings`` every caption, the empty caption (caption dropout) and the validation prompts go
through the text encoder once. A batch draws its caption-dropout and flip decisions from the run's generator in
the same order whether or not anything is cached, so cached and uncached runs consume the same random numbers.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from fitad.train.config import LoraTrainConfig
from fitad.train.data import TrainDataset, image_to_tensor, load_image

Cond = dict[str, torch.Tensor]


def collate(conds: Sequence[Cond]) -> Cond:
    """Stack per-caption conditionings into one batch."""
    return {key: torch.cat([c[key] for c in conds], dim=0) for key in conds[0]}


class Encodings:
    """The run's encoded inputs: a latent cache keyed by (image, flipped), a text cache keyed by caption."""

    def __init__(self, recipe: Any, config: LoraTrainConfig, dataset: TrainDataset) -> None:
        self.recipe = recipe
        self.config = config
        self.dataset = dataset
        self.latents: dict[tuple[int, bool], torch.Tensor] = {}
        self.text: dict[str, Cond] = {}

    @property
    def latents_cached(self) -> bool:
        return bool(self.latents)

    @property
    def text_cached(self) -> bool:
        return bool(self.text)

    def fill(self, validation_prompts: list[str]) -> float:
        """Encode what the config caches; returns the seconds it took."""
        start = time.perf_counter()
        cfg = self.config
        with self.recipe.encoding():
            if cfg.cache_latents:
                flips = (False, True) if cfg.random_flip else (False,)
                for index, example in enumerate(self.dataset.examples):
                    for flip in flips:
                        pixels = image_to_tensor(load_image(example.image_path, self.dataset.targets[index], flip))
                        self.latents[(index, flip)] = self.recipe.encode_images(pixels[None])
            if cfg.cache_text_embeddings and not self.recipe.text_trainable:
                captions = {ex.caption for ex in self.dataset.examples} | {""} | set(validation_prompts)
                for caption in sorted(captions):
                    self.text[caption] = self.recipe.encode_text([caption])
        return time.perf_counter() - start

    def batch(self, indices: list[int], generator: torch.Generator) -> tuple[torch.Tensor, Cond]:
        """Latents and conditioning of the examples ``indices``, with dropout and flips drawn from ``generator``."""
        cfg = self.config
        n = len(indices)
        # Draw in a fixed order whatever is cached, so cached and uncached runs consume the same numbers.
        drop = ((torch.rand(n, generator=generator) < cfg.caption_dropout).tolist() if cfg.caption_dropout
                else [False] * n)
        flip = (torch.rand(n, generator=generator) < 0.5).tolist() if cfg.random_flip else [False] * n
        if self.latents:
            latents = torch.cat([self.latents[(i, f)] for i, f in zip(indices, flip)], dim=0)
        else:
            pixels = torch.stack([image_to_tensor(load_image(self.dataset.examples[i].image_path,
                                                             self.dataset.targets[i], f))
                                  for i, f in zip(indices, flip)])
            latents = self.recipe.encode_images(pixels)
        captions = ["" if d else self.dataset.examples[i].caption for i, d in zip(indices, drop)]
        if self.text:
            cond = getattr(self.recipe, "collate_text", collate)([self.text[c] for c in captions])
        else:
            cond = self.recipe.encode_text(captions)
        return latents, cond

    def conds(self, prompts: list[str]) -> list[Cond] | None:
        """Cached conditionings of the validation prompts (None: the recipe encodes them itself)."""
        return [self.text[p] for p in prompts] if self.text else None
