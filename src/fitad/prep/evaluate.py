"""Quality of data preparation measured against ``fitad.synth`` ground truth.

Metrics, per panel and overall:

* text-box recall: a ground-truth text box counts as found when at least ``COVERAGE`` of its area
  lies inside the detected text polygons;
* residual text: the detector is run again on the cleaned image; the fraction of the ground-truth
  text area it still finds there (target <= 5%);
* crop recall: a ground-truth character counts when its bbox lies inside one of the crop boxes;
* segmentation IoU: the subject mask (before cropping, at the image's resolution) against
  ``subject_mask``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fitad.prep.config import PrepConfig
from fitad.prep.io import load_image
from fitad.prep.run import Backends, process_image, run_tasks
from fitad.prep.text import text_mask

COVERAGE = 0.7      # share of a text box that detections must cover for it to count as found
BOX_TOLERANCE = 2   # px a character bbox may stick out of a crop box (anti-aliased edge pixels)
TARGETS = {"text_box_recall": (">=", 0.90), "residual_text": ("<=", 0.05),
           "crop_recall": (">=", 0.95), "mean_iou": (">=", 0.80)}


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two binary masks (1.0 when both are empty)."""
    p, t = pred > 127, truth > 127
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def box_coverage(box: list[int], covered: np.ndarray) -> float:
    """Fraction of ``box`` (x0, y0, x1, y1; x1/y1 exclusive) where ``covered`` is set."""
    x0, y0, x1, y1 = (int(v) for v in box)
    region = covered[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return float(np.count_nonzero(region)) / region.size if region.size else 0.0


def box_inside(inner: list[int], outer: list[int], tolerance: int = BOX_TOLERANCE) -> bool:
    return (inner[0] >= outer[0] - tolerance and inner[1] >= outer[1] - tolerance
            and inner[2] <= outer[2] + tolerance and inner[3] <= outer[3] + tolerance)


def evaluate_panel(json_path: str, config: PrepConfig, backends: Backends) -> dict[str, Any]:
    """All metrics of one synth panel (its ``.json`` beside the image and masks)."""
    meta = json.loads(Path(json_path).read_text(encoding="utf-8"))
    root = Path(json_path).parent
    loaded = load_image((root / meta["image"]).read_bytes(), meta["image"], max_pixels=config.max_pixels,
                        min_side=config.min_image_side)
    rgb = loaded.rgb
    shape = rgb.shape[:2]
    result = process_image(rgb, config, backends, caption=False)

    detected = text_mask(shape, result.polygons) > 0
    gt_boxes = [t["box"] for t in meta.get("texts", [])]
    coverage = [box_coverage(b, detected) for b in gt_boxes]
    gt_text = text_mask(shape, [np.asarray(t["polygon"], np.float32) for t in meta.get("texts", [])]) > 0
    residual_polys = backends.text.detect(result.cleaned) if gt_boxes else []
    residual = text_mask(shape, residual_polys) > 0
    text_area = int(np.count_nonzero(gt_text))

    crop_boxes = [list(c.box) for c in result.crops]
    chars = [c["bbox"] for c in meta.get("characters", [])]
    truth = cv2.imread(str(root / meta["subject_mask"]), cv2.IMREAD_GRAYSCALE)
    if truth is None or truth.shape != shape:
        raise ValueError(f"{meta['subject_mask']}: missing or not {shape[1]}x{shape[0]}")
    return {
        "image": meta["image"],
        "background": meta.get("background", "?"),
        "text_boxes": len(gt_boxes),
        "text_boxes_found": sum(c >= COVERAGE for c in coverage),
        "text_coverage_mean": round(float(np.mean(coverage)), 4) if coverage else None,
        "detected_polygons": len(result.polygons),
        "text_area": text_area,
        "residual_area": int(np.count_nonzero(residual & gt_text)),
        "residual_text": round(np.count_nonzero(residual & gt_text) / text_area, 4) if text_area else 0.0,
        "characters": len(chars),
        "characters_in_crop": sum(any(box_inside(c, b) for b in crop_boxes) for c in chars),
        "crops": len(crop_boxes),
        "iou": round(mask_iou(result.mask, truth), 4),
        "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
    }


@dataclasses.dataclass
class EvalReport:
    panels: list[dict[str, Any]]
    overall: dict[str, float]
    targets: dict[str, tuple[str, float]]
    passed: dict[str, bool]
    backends: dict[str, str]

    @property
    def all_passed(self) -> bool:
        return all(self.passed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "targets": {k: f"{op} {v}" for k, (op, v) in self.targets.items()},
                "passed": self.passed, "backends": self.backends, "panels": self.panels}


def aggregate(panels: list[dict[str, Any]]) -> dict[str, float]:
    """Overall metrics: recalls over all boxes/characters, residual over all text area, mean IoU."""
    boxes = sum(p["text_boxes"] for p in panels)
    chars = sum(p["characters"] for p in panels)
    area = sum(p["text_area"] for p in panels)
    by_bg: dict[str, list[float]] = {}
    for p in panels:
        by_bg.setdefault(p["background"], []).append(p["iou"])
    return {
        "panels": len(panels),
        "text_box_recall": round(sum(p["text_boxes_found"] for p in panels) / boxes, 4) if boxes else 1.0,
        "residual_text": round(sum(p["residual_area"] for p in panels) / area, 4) if area else 0.0,
        "crop_recall": round(sum(p["characters_in_crop"] for p in panels) / chars, 4) if chars else 1.0,
        "mean_iou": round(float(np.mean([p["iou"] for p in panels])), 4) if panels else 0.0,
        "min_iou": round(float(np.min([p["iou"] for p in panels])), 4) if panels else 0.0,
        **{f"mean_iou_{bg}": round(float(np.mean(v)), 4) for bg, v in sorted(by_bg.items())},
    }


def check_targets(overall: dict[str, float], targets: dict[str, tuple[str, float]] = TARGETS) -> dict[str, bool]:
    return {k: (overall[k] >= v if op == ">=" else overall[k] <= v) for k, (op, v) in targets.items()}


def list_panels(data_dir: str | os.PathLike) -> list[Path]:
    """The synth panels (``*.json`` with an image and a subject mask) directly in ``data_dir``."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"synth directory {str(root)!r} does not exist")
    panels = []
    for path in sorted(root.glob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and {"image", "subject_mask", "texts", "characters"} <= meta.keys():
            panels.append(path)
    return panels


def evaluate(config: PrepConfig, data_dir: str | os.PathLike, *, limit: int | None = None,
             on_panel: Callable[[dict[str, Any]], None] | None = None) -> EvalReport:
    """Run the prep steps on every synth panel in ``data_dir`` and score them (``config.workers`` processes)."""
    panels = list_panels(data_dir)[:limit]
    if not panels:
        raise FileNotFoundError(f"no synth panels (*.json with ground truth) in {str(data_dir)!r}")
    results = run_tasks(_evaluate_task, [str(p) for p in panels], config, workers=config.workers,
                        on_result=on_panel)
    backends = results[0].pop("_backends")
    for r in results[1:]:
        r.pop("_backends", None)
    overall = aggregate(results)
    return EvalReport(results, overall, dict(TARGETS), check_targets(overall), backends)


def _evaluate_task(json_path: str, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> dict:
    out = evaluate_panel(json_path, config, backends)
    out["_backends"] = backends.names()
    return out
