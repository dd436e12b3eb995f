"""Captions: a model's description (BLIP) or none (template), with the trigger and class word in front."""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np

from fitad.prep.config import PrepConfig

# Words BLIP is known to hallucinate at the start of captions of drawings ("arafed woman ...").
_BLIP_ARTIFACTS = re.compile(r"\b(?:arafed|araffe|arafe|arafly)\b\s*", re.IGNORECASE)


class Captioner(Protocol):
    name: str

    def describe(self, rgb: np.ndarray) -> str:
        """Free-text description of the image ('' for none)."""
        ...


class TemplateCaptioner:
    """No model: the caption is just the trigger and class word."""

    name = "template"

    def describe(self, rgb: np.ndarray) -> str:
        return ""


class BlipCaptioner:
    """BLIP (``BlipForConditionalGeneration``) from a model ID, a local directory or a tiny zoo name.

    Loads from local files only unless ``allow_model_download`` is set, so a missing model is a
    clear error instead of a download attempt.
    """

    name = "blip"

    def __init__(self, config: PrepConfig, device: str = "cpu", threads: int | None = None):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        from fitad import zoo

        if threads:
            torch.set_num_threads(threads)
        try:
            source = zoo.resolve_model(config.caption_model)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"prep.caption_model: {exc}") from None
        local_only = zoo.hub_offline() or not config.allow_model_download
        try:
            self.processor = BlipProcessor.from_pretrained(source, local_files_only=local_only)
            self.model = BlipForConditionalGeneration.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as exc:
            hint = "" if not local_only else (
                " Only local files are used (prep.allow_model_download=false or HF_HUB_OFFLINE=1): put the "
                "model in the Hugging Face cache or point prep.caption_model at its directory.")
            raise FileNotFoundError(
                f"prep.caption_model: could not load BLIP model {config.caption_model!r} from {source!r}: "
                f"{type(exc).__name__}: {exc}.{hint}") from None
        self.device = device
        self.model.to(device).eval()
        self.max_length = config.caption_max_length
        self.num_beams = config.caption_num_beams

    def describe(self, rgb: np.ndarray) -> str:
        import torch
        from PIL import Image

        inputs = self.processor(images=Image.fromarray(rgb), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_length=self.max_length, num_beams=self.num_beams)
        return self.processor.decode(ids[0], skip_special_tokens=True)


def make_captioner(config: PrepConfig, device: str = "cpu", threads: int | None = None) -> tuple[Captioner, str]:
    if config.captioner == "blip":
        return BlipCaptioner(config, device=device, threads=threads), f"blip ({config.caption_model})"
    return TemplateCaptioner(), "template"


def clean_caption(text: str, trigger: str = "") -> str:
    """Tidy a model caption: known artifacts, the trigger, repeated words and stray spaces removed."""
    text = _BLIP_ARTIFACTS.sub("", text or "")
    if trigger:
        text = re.sub(rf"(?<![\w-]){re.escape(trigger)}(?![\w-])", " ", text, flags=re.IGNORECASE)
    words = text.replace("\n", " ").split()
    deduped = [w for i, w in enumerate(words) if i == 0 or w.lower() != words[i - 1].lower()]
    text = " ".join(deduped)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])\1+", r"\1", text)
    return text.strip(" ,.;:")


def compose_caption(trigger: str, class_word: str = "", description: str = "") -> str:
    """``"<trigger> <class word>, <description>"``; exactly one trigger, no empty parts."""
    head = " ".join(w for w in (trigger.strip(), class_word.strip()) if w)
    body = clean_caption(description, trigger=trigger)
    return f"{head}, {body}" if body else head
