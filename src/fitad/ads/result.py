"""Writing an ad: the PNG with its metadata in text chunks, and the same metadata as JSON beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from fitad.fsutil import atomic_file, atomic_write_json

PNG_KEY = "fitad:ad"          # the full metadata as JSON
COPY_KEY = "fitad:copy"       # caption and hashtags as JSON


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The ``parameters`` text chunk A1111-style tools show: prompt, negative prompt, settings."""
    prompt = meta.get("prompt") or {}
    fields = [("Steps", meta.get("steps")), ("CFG scale", meta.get("guidance")), ("Seed", meta.get("seed")),
              ("Size", "x".join(map(str, meta.get("render_size", [])))), ("Model", meta.get("base_model")),
              ("Mode", meta.get("mode")), ("Format", (meta.get("format") or {}).get("key"))]
    lora = meta.get("lora") or {}
    if lora:
        fields.append(("Lora", f"{Path(str(lora.get('path', ''))).name}:{lora.get('scale')}"))
    tail = ", ".join(f"{k}: {v}" for k, v in fields if v not in (None, ""))
    text = prompt.get("used", "")
    if prompt.get("negative"):
        text += f"\nNegative prompt: {prompt['negative']}"
    return f"{text}\n{tail}".strip()


def write_ad(result: Any, path: Path) -> tuple[Path, Path]:
    """``path`` (.png) and ``path.with_suffix('.json')``, each written atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, json.dumps(result.metadata, ensure_ascii=False))
    info.add_itxt(COPY_KEY, json.dumps(result.copy, ensure_ascii=False))
    info.add_text("parameters", a1111_parameters(result.metadata))
    with atomic_file(path) as tmp:
        Image.fromarray(result.image).save(tmp, format="PNG", pnginfo=info, compress_level=6)
    json_path = atomic_write_json(path.with_suffix(".json"), {**result.metadata, "copy": result.copy,
                                                              "image": path.name})
    return path, json_path


def read_ad_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata an ad PNG carries (``fitad:ad`` and ``fitad:copy`` chunks)."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}) or img.info
        meta = json.loads(text[PNG_KEY])
        meta["copy"] = json.loads(text[COPY_KEY]) if COPY_KEY in text else None
        meta["parameters"] = text.get("parameters")
    return meta
