"""What an ad keeps: the product (segmented or from the photo's alpha) and faces (detected), as masks.

Product segmentation reuses the prep backends: rembg when its model file is on disk, otherwise the OpenCV
segmenter in its photo mode. Faces come from OpenCV's YuNet when its model file is configured, otherwise from
the LBP frontal-face cascade that ships inside scikit-image (OpenCV 5 wheels no longer carry Haar cascades).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fitad.ads.config import AdConfig


class SubjectError(ValueError):
    """The photo has no product / no face where the mode needs one; the message says which and where."""


Box = tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclasses.dataclass
class Subject:
    mask: np.ndarray                 # H x W uint8, 255 = keep
    boxes: list[Box]
    backend: str


# ---------------------------------------------------------------- product

def product_mask(rgb: np.ndarray, config: AdConfig, alpha: np.ndarray | None = None, name: str = "image") -> Subject:
    """The product's mask: the photo's own transparency when it has any, else the segmenter's."""
    if alpha is not None:
        # kept exactly: the opaque pixels. The anti-aliased rim (its RGB flattened on white by the loader) is
        # left to the feathered edge, so no white fringe is pasted back
        mask = np.where(alpha >= 250, 255, 0).astype(np.uint8)
        backend = "alpha channel"
    else:
        from fitad.prep.config import PrepConfig
        from fitad.prep.segment import make_segmenter

        prep = PrepConfig(segmenter=config.segmenter, rembg_model=config.rembg_model,
                          segment_max_side=config.segment_max_side)
        segmenter, backend = make_segmenter(prep, content="photo")
        mask = segmenter.segment(rgb)
    share = float(np.count_nonzero(mask)) / mask.size
    if share <= 0 or share < config.min_product_area:
        raise SubjectError(f"{name}: no product found ({share:.1%} of the photo segmented, below "
                           f"ads.min_product_area = {config.min_product_area:.0%}); use a photo where the product "
                           "stands out from its background, or a PNG cut-out with transparency")
    if share > 0.97:
        raise SubjectError(f"{name}: no product found (the whole photo was taken as the product); use a photo "
                           "with background around the product, or a PNG cut-out with transparency")
    ys, xs = np.nonzero(mask)
    return Subject(mask=mask, boxes=[(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)],
                   backend=backend)


# ---------------------------------------------------------------- faces

@lru_cache(maxsize=1)
def _lbp_cascade():
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def _nms(boxes: list[tuple[Box, float]], iou: float = 0.3) -> list[Box]:
    kept: list[Box] = []
    for box, _score in sorted(boxes, key=lambda b: -b[1]):
        if all(_iou(box, k) < iou for k in kept):
            kept.append(box)
    return kept


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def skin_share(rgb: np.ndarray, box: Box) -> float:
    """Share of skin-coloured pixels (YCrCb: Cr 133-173, Cb 77-127) in the middle 60 % of ``box``.

    The LBP cascade fires on some textured objects (a helmet visor, lettering); a real face has skin in the
    middle of its box whatever its tone, which that wide chroma range admits.
    """
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) // 5, (y1 - y0) // 5
    centre = rgb[y0 + dy:y1 - dy, x0 + dx:x1 - dx]
    if centre.size == 0:
        return 0.0
    ycc = cv2.cvtColor(np.ascontiguousarray(centre), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def _detect_lbp(rgb: np.ndarray, min_skin: float = 0.3) -> list[tuple[Box, float]]:
    from fitad.prep.text import downscale

    small, scale = downscale(rgb, 512)
    side = min(small.shape[:2])
    found = _lbp_cascade().detect_multi_scale(img=small, scale_factor=1.15, step_ratio=1,
                                              min_size=(max(24, side // 12),) * 2, max_size=(side, side),
                                              min_neighbor_number=4)
    out = []
    for f in found:
        if skin_share(small, (f["c"], f["r"], f["c"] + f["width"], f["r"] + f["height"])) < min_skin:
            continue
        x0, y0 = f["c"] / scale, f["r"] / scale
        out.append(((int(x0), int(y0), int(x0 + f["width"] / scale), int(y0 + f["height"] / scale)),
                    float(f["width"] * f["height"])))
    return out


def _detect_yunet(rgb: np.ndarray, model: Path) -> list[tuple[Box, float]]:
    height, width = rgb.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(model), "", (width, height), 0.7)
    _ok, faces = detector.detect(np.ascontiguousarray(rgb[..., ::-1]))
    out = []
    for face in faces if faces is not None else []:
        x, y, w, h = (float(v) for v in face[:4])
        out.append(((int(x), int(y), int(x + w), int(y + h)), float(face[-1])))
    return out


def face_detector_name(config: AdConfig) -> str:
    """The backend ``face_detector`` resolves to; a configured YuNet file that is missing is an error."""
    if config.face_detector == "lbp":
        return "lbp"
    if config.face_model and Path(config.face_model).expanduser().is_file():
        return "yunet"
    if config.face_detector == "yunet" or config.face_model:
        raise SubjectError(f"ads.face_model: YuNet model file {config.face_model!r} not found "
                           "(set face_detector: lbp to use the embedded cascade)")
    return "lbp"


def detect_faces(rgb: np.ndarray, config: AdConfig) -> tuple[list[Box], str]:
    """Face boxes (largest first) and the backend that found them."""
    backend = face_detector_name(config)
    found = (_detect_yunet(rgb, Path(config.face_model).expanduser()) if backend == "yunet"
             else _detect_lbp(rgb))
    boxes = sorted(_nms(found), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return boxes, ("yunet:" + Path(config.face_model).name if backend == "yunet"
                   else "lbp-frontal-face (scikit-image)")


def face_mask(shape: tuple[int, int], boxes: list[Box], margin: float) -> np.ndarray:
    """Ellipses around each face box, grown by ``margin`` sideways and more upwards (hair) and down (chin)."""
    mask = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        center = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2 - 0.08 * h)))
        axes = (int(round(w * (0.5 + margin))), int(round(h * (0.5 + margin * 1.3))))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 255, thickness=-1)
    return mask


def person_faces(rgb: np.ndarray, config: AdConfig, name: str = "image") -> Subject:
    """Faces of a person photo as a keep mask; no face is an error (a face must never be changed silently)."""
    boxes, backend = detect_faces(rgb, config)
    if not boxes:
        raise SubjectError(f"{name}: no face found ({backend}); person mode keeps the face exactly and will not "
                           "repaint a photo without one. Use a photo with a clear frontal face, or product mode")
    return Subject(mask=face_mask(rgb.shape[:2], boxes, config.face_margin), boxes=boxes, backend=backend)
