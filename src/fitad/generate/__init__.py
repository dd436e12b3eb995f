"""Image generation: a base diffusion pipeline loaded once, LoRA adapters swapped per request, prompts.

* :mod:`fitad.generate.renderer` -- :class:`Renderer`: txt2img / inpaint / img2img with a LoRA, seeds,
  progress, one generation at a time, VAE decoded in float32.
* :mod:`fitad.generate.adapters` -- the adapter pool: CPU-side LRU of adapter state dicts, a bounded set
  resident in the pipeline, in-place hot swap where it applies.
* :mod:`fitad.generate.prompts` -- industry templates, Korean glossary, the token budget.
* :mod:`fitad.generate.clip` -- A1111-style clip skip, shared with training.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RenderConfig", "Renderer", "RenderResult", "build_prompt", "PromptPlan"]


def __getattr__(name: str) -> Any:  # torch and diffusers are imported only when a renderer is needed
    if name == "RenderConfig":
        from fitad.generate.config import RenderConfig
        return RenderConfig
    if name in ("Renderer", "RenderResult"):
        from fitad.generate import renderer
        return getattr(renderer, name)
    if name in ("build_prompt", "PromptPlan"):
        from fitad.generate import prompts
        return getattr(prompts, name)
    raise AttributeError(name)
