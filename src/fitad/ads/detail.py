"""Detail pass: faces of a text-to-image ad re-rendered at the model's native size and blended back.

Small faces in a full-frame render get few latent pixels; re-rendering a crop around each at native size
(img2img, low strength) restores detail. Pixels outside every grown box stay exactly as they were.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from fitad.ads.composite import feather_alpha
from fitad.ads.formats import resize


def detail_pass(renderer: Any, rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], prompt: str,
                negative_prompt: str, *, strength: float, seed: int, lora: Any = None, lora_scale: float = 1.0,
                steps: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """Re-render each box region at the model's native size (img2img) and blend it back with a soft ellipse.

    Pixels outside every grown box are left exactly as they were.
    """
    out = rgb.copy()
    native = renderer.native_size()
    done = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        side = int(max(x1 - x0, y1 - y0) * 1.6)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        bx0, by0 = max(0, cx - side // 2), max(0, cy - side // 2)
        bx1, by1 = min(rgb.shape[1], bx0 + side), min(rgb.shape[0], by0 + side)
        crop = out[by0:by1, bx0:bx1]
        if min(crop.shape[:2]) < 8:
            continue
        up = resize(crop, native, native)
        redone = renderer.img2img(up, prompt, negative_prompt=negative_prompt, strength=strength, seed=seed + i,
                                  lora=lora, lora_scale=lora_scale, steps=steps).image
        back = resize(redone, bx1 - bx0, by1 - by0)
        ellipse = np.zeros(crop.shape[:2], np.uint8)
        cv2.ellipse(ellipse, ((bx1 - bx0) // 2, (by1 - by0) // 2), (int((bx1 - bx0) * 0.36), int((by1 - by0) * 0.36)),
                    0, 0, 360, 255, -1)
        alpha = feather_alpha(ellipse, max(2, (bx1 - bx0) // 8))[..., None]
        blended = crop.astype(np.float32) * (1 - alpha) + back.astype(np.float32) * alpha
        out[by0:by1, bx0:bx1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        done.append({"box": [bx0, by0, bx1, by1], "render_side": native})
    return out, done
