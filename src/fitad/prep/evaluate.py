"""Quality of data preparation measured against ground truth in the synth JSON format.

Any folder of panels in that format can be scored: ``fitad.synth``'s own and ``fitad.synth_styles``'
(``*.json`` with ``image``, ``subject_mask``, ``texts[{box, polygon, kind}]``, ``characters[{bbox}]``).
Metrics, per panel and overall:

* text recall, overall and per kind (bubble, narration, vertical, sfx): a ground-truth text box is
  found when at least ``COVERAGE`` of its area lies inside the region the stage removes (the detected
  polygons with their inpainting margin, ``prep.text_dilate_px`` / ``text_dilate_share``);
* residual text: the detector is run again on the cleaned image (with a pass on a 512 px copy, without
  LetterNet); the fraction of the ground-truth text area its detections still cover, counting only
  detections of about a text line's size (at most 4 times the area of the text they overlap: see
  :func:`leftover_lines`);
* characters found: the subjects the stage kept are matched one to one with the characters (box IoU
  at least ``MATCH_IOU``, best pairs first); the share of characters that got a subject;
* character IoU: per character, the best box IoU of any subject; the mean over characters;
* whole-character crops: the crop made for a character's own subject (matched as above) holds its whole
  box, so this is never above characters found;
* character pixels removed: the share of the characters' visible pixels inside the region the text
  cleanup removes (what over-eager cleanup costs the figures);
* false subjects: kept subjects matched to no character (narration boxes, buildings, balloon pieces,
  or one half of a split figure), per panel; ``false_subject_kinds`` tells pieces of a character
  from regions holding none;
* mask IoU: the subject mask (before cropping) against ``subject_mask``.
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
from fitad.prep.text import detect_text, text_mask

COVERAGE = 0.5      # share of a text box that detections must cover for it to count as found
MATCH_IOU = 0.5     # box IoU at which a subject counts as a character's
PIECE_SHARE = 0.25  # an unmatched subject holding this share of a character's pixels is a piece of it
BOX_TOLERANCE = 2   # px a character bbox may stick out of a crop box (anti-aliased edge pixels)
TEXT_KINDS = ("bubble", "narration", "vertical", "sfx")
TARGETS = {"text_recall": (">=", 0.95), "text_recall_vertical": (">=", 0.85), "text_recall_sfx": (">=", 0.85),
           "residual_text": ("<=", 0.05), "characters_found": (">=", 0.90), "character_iou": (">=", 0.80),
           "whole_character_crops": (">=", 0.90), "false_subjects_per_panel": ("<=", 0.10)}


def residual_config(config: PrepConfig) -> PrepConfig:
    """The detector passes that look for text left after cleanup: the configured ones plus a 512 px copy."""
    small = config.detect_small_side or min(512, config.detect_max_side - 1)
    return dataclasses.replace(config, detect_small_side=small)


def leftover_lines(detections: list[np.ndarray], texts: list[np.ndarray], shape: tuple[int, ...],
                   max_growth: float = 4.0) -> list[np.ndarray]:
    """The detections on a cleaned image that can be leftover lettering: those no more than ``max_growth``
    times the area of the text they overlap. A box spanning half the panel (the detector's answer to
    inpainted paper at a low score threshold) is no text line, however much text once lay under it."""
    truth = [text_mask(shape, [t]) > 0 for t in texts]
    kept = []
    for detection in detections:
        found = text_mask(shape, [detection]) > 0
        under = sum(int(np.count_nonzero(t)) for t in truth if np.count_nonzero(t & found))
        if under and np.count_nonzero(found) <= max_growth * under:
            kept.append(detection)
    return kept


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two binary masks (1.0 when both are empty)."""
    p, t = pred > 127, truth > 127
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def box_iou(a: list[int], b: list[int]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1; x1/y1 exclusive)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_coverage(box: list[int], covered: np.ndarray) -> float:
    """Fraction of ``box`` (x0, y0, x1, y1; x1/y1 exclusive) where ``covered`` is set."""
    x0, y0, x1, y1 = (int(v) for v in box)
    region = covered[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return float(np.count_nonzero(region)) / region.size if region.size else 0.0


def box_inside(inner: list[int], outer: list[int], tolerance: int = BOX_TOLERANCE) -> bool:
    return (inner[0] >= outer[0] - tolerance and inner[1] >= outer[1] - tolerance
            and inner[2] <= outer[2] + tolerance and inner[3] <= outer[3] + tolerance)


def match_boxes(truth: list[list[int]], found: list[list[int]], threshold: float = MATCH_IOU) -> dict[int, int]:
    """One-to-one matching, best IoU pairs first: ``{truth index: found index}`` for pairs at ``threshold`` or more."""
    pairs = sorted(((box_iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def score_characters(chars: list[list[int]], char_masks: list[np.ndarray], subjects: list[list[int]],
                     crops: list[list[int]]) -> dict[str, Any]:
    """Characters found, best IoU each, whole-character crops and false subjects of one panel.

    ``subjects[k]`` is the box of a kept subject and ``crops[k]`` the square box its crop was cut from.
    """
    matched = match_boxes(chars, subjects)
    best_iou = [max((box_iou(char, s) for s in subjects), default=0.0) for char in chars]
    # whole: the crop made for the character's own subject holds it (one huge subject cannot count for all)
    whole = sum(box_inside(chars[i], crops[j]) for i, j in matched.items())
    kinds: list[str] = []
    for j in set(range(len(subjects))) - set(matched.values()):
        x0, y0, x1, y1 = subjects[j]
        shares = [np.count_nonzero(m[max(y0, 0):y1, max(x0, 0):x1]) / max(np.count_nonzero(m), 1) for m in char_masks]
        kinds.append("piece" if max(shares, default=0.0) >= PIECE_SHARE else "non_character")
    return {"characters": len(chars), "characters_found": len(matched), "character_iou": [round(v, 4) for v in best_iou],
            "whole_crops": whole, "subjects": len(subjects), "false_subjects": len(kinds),
            "false_subject_kinds": sorted(kinds)}


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != shape:
        raise ValueError(f"mask {path.name} is missing, unreadable or not {shape[1]}x{shape[0]}")
    return mask


def evaluate_panel(json_path: str, config: PrepConfig, backends: Backends) -> dict[str, Any]:
    """All metrics of one panel (its ``.json`` beside the image and masks)."""
    meta = json.loads(Path(json_path).read_text(encoding="utf-8"))
    root = Path(json_path).parent
    loaded = load_image((root / meta["image"]).read_bytes(), meta["image"], max_pixels=config.max_pixels,
                        min_side=config.min_image_side)
    rgb = loaded.rgb
    shape = rgb.shape[:2]
    result = process_image(rgb, config, backends, caption=False)

    detected = result.text_mask > 0  # what the stage removes: the detections with their margin
    texts = meta.get("texts", [])
    by_kind: dict[str, list[int]] = {}
    for text in texts:
        counts = by_kind.setdefault(text.get("kind", "other"), [0, 0])
        counts[0] += 1
        counts[1] += box_coverage(text["box"], detected) >= COVERAGE
    gt_text = text_mask(shape, [np.asarray(t["polygon"], np.float32) for t in texts]) > 0
    # residual lettering is looked for by the detector alone (LetterNet would judge its own cleanup), with the
    # pass on a 512 px copy that sees big lettering, whatever the stage itself runs
    residual_polys = detect_text(backends.text, result.cleaned, residual_config(config)) if texts else []
    gt_polys = [np.asarray(t["polygon"], np.float32) for t in texts]
    residual = text_mask(shape, leftover_lines(residual_polys, gt_polys, shape)) > 0
    text_area = int(np.count_nonzero(gt_text))

    chars = meta.get("characters", [])
    char_masks = [read_mask(root / c["mask"], shape) > 127 if c.get("mask") else _box_mask(shape, c["bbox"])
                  for c in chars]
    truth = read_mask(root / meta["subject_mask"], shape)
    characters = score_characters([c["bbox"] for c in chars], char_masks, [list(f.bbox) for f in result.figures],
                                  [list(c.box) for c in result.crops])
    visible = np.logical_or.reduce(char_masks) if char_masks else np.zeros(shape, bool)
    return {
        "image": meta["image"],
        "background": meta.get("background", "?"),
        "text_boxes": len(texts),
        "text_boxes_found": sum(found for _n, found in by_kind.values()),
        "text_by_kind": {k: {"boxes": n, "found": f} for k, (n, f) in sorted(by_kind.items())},
        "detected_polygons": len(result.polygons),
        "text_area": text_area,
        "residual_area": int(np.count_nonzero(residual & gt_text)),
        "residual_text": round(np.count_nonzero(residual & gt_text) / text_area, 4) if text_area else 0.0,
        **characters,
        "character_area": int(np.count_nonzero(visible)),
        "character_area_removed": int(np.count_nonzero(visible & detected)),
        "rejected": result.rejected,
        "iou": round(mask_iou(result.mask, truth), 4),
        "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
    }


def _box_mask(shape: tuple[int, int], box: list[int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


@dataclasses.dataclass
class EvalReport:
    panels: list[dict[str, Any]]
    overall: dict[str, float]
    targets: dict[str, tuple[str, float]]
    passed: dict[str, bool]
    backends: dict[str, str]
    errors: list[str] = dataclasses.field(default_factory=list)  # panels that could not be scored, and why

    @property
    def all_passed(self) -> bool:
        return all(self.passed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "targets": {k: f"{op} {v}" for k, (op, v) in self.targets.items()},
                "passed": self.passed, "backends": self.backends, "errors": self.errors, "panels": self.panels}


def _ratio(num: float, den: float, empty: float | None) -> float | None:
    return round(num / den, 4) if den else empty


def aggregate(panels: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall metrics: recalls over all boxes and characters, residual over all text area, means per panel.

    A text kind no panel has is ``None`` (its target is not checked).
    """
    boxes = sum(p["text_boxes"] for p in panels)
    chars = sum(p["characters"] for p in panels)
    area = sum(p["text_area"] for p in panels)
    kinds: dict[str, list[int]] = {}
    for p in panels:
        for kind, c in p.get("text_by_kind", {}).items():
            total = kinds.setdefault(kind, [0, 0])
            total[0] += c["boxes"]
            total[1] += c["found"]
    by_bg: dict[str, list[float]] = {}
    for p in panels:
        by_bg.setdefault(p["background"], []).append(p["iou"])
    ious = [v for p in panels for v in p["character_iou"]]
    false_kinds = [k for p in panels for k in p["false_subject_kinds"]]
    return {
        "panels": len(panels),
        "text_boxes": boxes,
        "text_recall": _ratio(sum(p["text_boxes_found"] for p in panels), boxes, 1.0),
        **{f"text_recall_{kind}": _ratio(kinds.get(kind, [0, 0])[1], kinds.get(kind, [0, 0])[0], None)
           for kind in sorted(set(TEXT_KINDS) | kinds.keys())},
        "text_boxes_by_kind": {k: v[0] for k, v in sorted(kinds.items())},
        "residual_text": _ratio(sum(p["residual_area"] for p in panels), area, 0.0),
        "characters": chars,
        "characters_found": _ratio(sum(p["characters_found"] for p in panels), chars, 1.0),
        "character_iou": round(float(np.mean(ious)), 4) if ious else 1.0,
        "whole_character_crops": _ratio(sum(p["whole_crops"] for p in panels), chars, 1.0),
        "false_subjects": len(false_kinds),
        "false_subjects_per_panel": _ratio(len(false_kinds), len(panels), 0.0),
        "false_subject_kinds": {k: false_kinds.count(k) for k in sorted(set(false_kinds))},
        "rejected_subjects": sum(len(p["rejected"]) for p in panels),
        "character_pixels_removed": _ratio(sum(p.get("character_area_removed", 0) for p in panels),
                                           sum(p.get("character_area", 0) for p in panels), 0.0),
        "mask_iou": round(float(np.mean([p["iou"] for p in panels])), 4) if panels else 0.0,
        "min_mask_iou": round(float(np.min([p["iou"] for p in panels])), 4) if panels else 0.0,
        **{f"mask_iou_{bg}": round(float(np.mean(v)), 4) for bg, v in sorted(by_bg.items())},
    }


def check_targets(overall: dict[str, Any], targets: dict[str, tuple[str, float]] = TARGETS) -> dict[str, bool]:
    """Target met per metric; metrics the set cannot measure (``None``: no vertical text in it) are left out."""
    return {k: (overall[k] >= v if op == ">=" else overall[k] <= v)
            for k, (op, v) in targets.items() if overall.get(k) is not None}


def list_panels(data_dir: str | os.PathLike) -> list[Path]:
    """The panels (``*.json`` in the synth format: image, subject mask, texts, characters) directly in ``data_dir``."""
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
    """Run the prep steps on every panel in ``data_dir`` and score them (``config.workers`` processes)."""
    panels = list_panels(data_dir)[:limit]
    if not panels:
        raise FileNotFoundError(f"no synth panels (*.json with ground truth) in {str(data_dir)!r}")
    results = run_tasks(_evaluate_task, [str(p) for p in panels], config, workers=config.workers,
                        on_result=on_panel)
    backends = results[0].pop("_backends")
    for r in results[1:]:
        r.pop("_backends", None)
    errors = [r["error"] for r in results if "error" in r]
    scored = [r for r in results if "error" not in r]
    if not scored:
        raise ValueError("no panel could be scored: " + "; ".join(errors[:5]))
    overall = aggregate(scored)
    return EvalReport(scored, overall, dict(TARGETS), check_targets(overall), backends, errors)


def _evaluate_task(json_path: str, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> dict:
    try:
        out = evaluate_panel(json_path, config, backends)
    except (KeyError, TypeError, ValueError, OSError) as exc:  # a broken panel is reported, the others are scored
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        out = {"image": Path(json_path).name, "error": f"{Path(json_path).name}: {what}"}
    out["_backends"] = backends.names()
    return out
