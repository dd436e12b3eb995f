"""Text detection (EasyOCR or RapidOCR's detector) and text removal by inpainting.

A detector returns one polygon per text region, as a float32 array of shape (N, 2) in the pixel
coordinates of the image it was given. Only detection is used: the text itself is never read.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fitad.prep.config import PrepConfig

EASYOCR_DETECTOR_FILE = "craft_mlt_25k.pth"  # EasyOCR's CRAFT detection weights
EASYOCR_LANGS = ["ko", "en"]
MAX_GROW_PX = 64  # the most any text polygon is grown for inpainting, however big the lettering


class TextDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Text polygons (float32, shape (N, 2)) in the coordinates of ``rgb``."""
        ...


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the scale applied."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


class RapidOCRDetector:
    """RapidOCR's PP-OCRv4 text detector (ONNX weights ship inside the rapidocr-onnxruntime wheel).

    Only the detection model is loaded; the image is downscaled to ``detect_max_side`` first because
    the detector's own resizing ignores smaller limits for large inputs.
    """

    name = "rapidocr"

    def __init__(self, config: PrepConfig, threads: int | None = None):
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _RapidDet

        model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
        if not model.exists():
            raise FileNotFoundError(f"RapidOCR detection model missing: {model}")
        self.max_side = config.detect_max_side
        self._det = _RapidDet({
            "model_path": str(model), "use_cuda": False, "use_dml": False,
            "intra_op_num_threads": threads or -1, "inter_op_num_threads": 1,
            "limit_side_len": self.max_side, "limit_type": "max",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "thresh": 0.3, "box_thresh": config.text_box_threshold, "max_candidates": 1000,
            "unclip_ratio": config.text_unclip_ratio, "use_dilation": True, "score_mode": "fast",
        })

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        small, scale = downscale(rgb, self.max_side)
        bgr = np.ascontiguousarray(small[..., ::-1])  # the PP-OCR models were trained on BGR input
        boxes, _elapsed = self._det(bgr)
        if boxes is None or len(boxes) == 0:
            return []
        return [np.asarray(b, dtype=np.float32).reshape(-1, 2) / scale for b in boxes]


def easyocr_weights_present(model_dir: str | os.PathLike) -> bool:
    return (Path(model_dir).expanduser() / EASYOCR_DETECTOR_FILE).is_file()


def easyocr_available(model_dir: str | os.PathLike) -> bool:
    """EasyOCR can run: the package is installed and its detector weights are on disk."""
    return importlib.util.find_spec("easyocr") is not None and easyocr_weights_present(model_dir)


class EasyOCRDetector:
    """EasyOCR ``Reader(['ko','en'])`` used for detection only, from weights already on disk."""

    name = "easyocr"

    def __init__(self, config: PrepConfig, use_gpu: bool = False):
        model_dir = Path(config.easyocr_model_dir).expanduser()
        if importlib.util.find_spec("easyocr") is None:
            raise RuntimeError("text_detector=easyocr needs the easyocr package: pip install 'fitad[easyocr]'")
        if not easyocr_weights_present(model_dir):
            raise FileNotFoundError(
                f"EasyOCR detector weights {EASYOCR_DETECTOR_FILE} not found in {model_dir} "
                "(prep.easyocr_model_dir); downloads are disabled, copy the file there first")
        import easyocr

        self.max_side = config.detect_max_side
        self._reader = easyocr.Reader(EASYOCR_LANGS, gpu=use_gpu, model_storage_directory=str(model_dir),
                                      download_enabled=False, recognizer=False, verbose=False)

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        horizontal, free = self._reader.detect(rgb, canvas_size=self.max_side)
        return easyocr_polygons(horizontal, free)


def _is_batched(items: list, point_depth: int) -> bool:
    """EasyOCR >= 1.4 wraps its lists in one more level (one list per image)."""
    if not items or not isinstance(items[0], (list, tuple, np.ndarray)):
        return False
    return len(items[0]) == 0 or np.asarray(items[0][0]).ndim == point_depth


def easyocr_polygons(horizontal: list, free: list) -> list[np.ndarray]:
    """Polygons from EasyOCR's ``detect`` output: ``[x0, x1, y0, y1]`` boxes plus free quadrilaterals."""
    if _is_batched(horizontal, 1):
        horizontal = horizontal[0]
    if _is_batched(free, 2):
        free = free[0]
    out: list[np.ndarray] = []
    for x0, x1, y0, y1 in horizontal or []:
        out.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32))
    for quad in free or []:
        out.append(np.asarray(quad, dtype=np.float32).reshape(-1, 2))
    return out


def resolve_text_detector(config: PrepConfig) -> str:
    """The backend ``config.text_detector`` means now: ``auto`` is EasyOCR when its weights are on disk."""
    if config.text_detector == "auto":
        return "easyocr" if easyocr_available(config.easyocr_model_dir) else "rapidocr"
    return config.text_detector


def make_text_detector(config: PrepConfig, threads: int | None = None,
                       use_gpu: bool = False) -> tuple[TextDetector, str]:
    """The configured detector and a note on why it was chosen (``auto`` prefers EasyOCR if on disk)."""
    choice = config.text_detector
    if choice == "easyocr":
        return EasyOCRDetector(config, use_gpu=use_gpu), "easyocr (configured)"
    if resolve_text_detector(config) == "easyocr":
        return EasyOCRDetector(config, use_gpu=use_gpu), f"easyocr (auto: weights in {config.easyocr_model_dir})"
    why = "configured" if choice == "rapidocr" else \
        f"auto: no EasyOCR weights in {config.easyocr_model_dir}, embedded default"
    return RapidOCRDetector(config, threads=threads), f"rapidocr ({why})"


# ---------------------------------------------------------------- passes

def polygon_bounds(polygon: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def rotate_back(polygon: np.ndarray, height: int) -> np.ndarray:
    """A polygon found on the image turned 90 degrees clockwise, in the original image's coordinates.

    Turning maps the point (x, y) to (height - y, x) (pixel edges, not pixel indices); this is its inverse.
    """
    return np.stack([polygon[:, 1], height - polygon[:, 0]], axis=1).astype(np.float32)


def detect_small(detector: TextDetector, rgb: np.ndarray, side: int) -> list[np.ndarray]:
    """Detect on a copy whose longer side is ``side``: big lettering (sound effects) fits the detector's view."""
    small, scale = downscale(rgb, side)
    if scale >= 1.0:
        return []
    return [p / scale for p in detector.detect(small)]


def detect_turned(detector: TextDetector, rgb: np.ndarray, min_aspect: float = 1.5) -> list[np.ndarray]:
    """Vertical text columns: detect on the image turned 90 degrees, keep what is tall in the original."""
    turned = np.ascontiguousarray(np.rot90(rgb, -1))
    out = []
    for polygon in detector.detect(turned):
        back = rotate_back(polygon, rgb.shape[0])
        x0, y0, x1, y1 = polygon_bounds(back)
        if y1 - y0 >= min_aspect * max(x1 - x0, 1.0):
            out.append(back)
    return out


class Lettering(Protocol):
    """A second opinion on where the lettering is (LetterNet's map of one image)."""

    def polygons(self) -> list[np.ndarray]: ...

    def confirms(self, polygon: np.ndarray) -> bool: ...

    def denies(self, polygon: np.ndarray) -> bool: ...


def detect_text(detector: TextDetector, rgb: np.ndarray, config: PrepConfig,
                lettering: Lettering | None = None) -> list[np.ndarray]:
    """Every pass the config asks for: the detector as is, a smaller copy, the image turned for columns,
    and the regions of ``lettering`` (LetterNet's map of ``rgb``) when given.

    A polygon of a later pass that lies mostly inside the earlier ones adds nothing and is left out.
    """
    polygons = list(detector.detect(rgb))
    extra: list[np.ndarray] = []
    if lettering is not None:
        extra += lettering.polygons()
    if config.detect_small_side:
        extra += detect_small(detector, rgb, config.detect_small_side)
    if config.detect_vertical:
        extra += detect_turned(detector, rgb)
    if not extra:
        return polygons
    covered = text_mask(rgb.shape, polygons) > 0
    h, w = covered.shape
    for polygon in extra:
        x0, y0, x1, y1 = polygon_bounds(polygon)
        wx0, wy0 = max(int(x0), 0), max(int(y0), 0)
        wx1, wy1 = min(int(np.ceil(x1)) + 1, w), min(int(np.ceil(y1)) + 1, h)
        if wx1 <= wx0 or wy1 <= wy0:
            continue
        own = text_mask((wy1 - wy0, wx1 - wx0), [polygon - [wx0, wy0]]) > 0  # in the polygon's own window
        area = np.count_nonzero(own)
        window = covered[wy0:wy1, wx0:wx1]
        if area and np.count_nonzero(own & window) < 0.8 * area:
            polygons.append(polygon)
            window |= own
    return polygons


# ---------------------------------------------------------------- false positives

def _box_ink(rgb: np.ndarray, polygon: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Connected ink components in the polygon's box grown by ``pad`` of its shorter side: (labels, stats).

    Ink is the minority class of an Otsu threshold, so white-on-dark lettering counts as well.
    """
    h, w = rgb.shape[:2]
    bx0, by0, bx1, by1 = polygon_bounds(polygon)
    grow = pad * min(bx1 - bx0, by1 - by0)
    x0, y0 = int(np.floor(bx0 - grow)), int(np.floor(by0 - grow))
    x1, y1 = int(np.ceil(bx1 + grow)), int(np.ceil(by1 + grow))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    _t, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if np.count_nonzero(ink) > ink.size / 2:
        ink = cv2.bitwise_not(ink)
    _n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    return labels, stats


def _inner_components(labels: np.ndarray, stats: np.ndarray, min_px: int) -> np.ndarray:
    """Indices of the components that do not touch the window's edge and have ``min_px`` pixels or more."""
    on_edge = np.zeros(len(stats), bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        on_edge[np.unique(edge)] = True
    on_edge[0] = True
    return np.flatnonzero(~on_edge & (stats[:, cv2.CC_STAT_AREA] >= min_px))


def crosses_box_only(rgb: np.ndarray, polygon: np.ndarray, min_glyph_px: int = 4, pad: float = 0.0) -> bool:
    """True when every ink stroke in the polygon's box runs on outside it (no glyph lies within).

    A real text line has ink components fully inside its box grown by ``pad`` times its shorter side
    (detections of big, outlined lettering can be tighter than the glyphs). Line art that fools the
    detector (a pair of legs, hatching) has only strokes that cross the box edge.
    """
    found = _box_ink(rgb, polygon, pad)
    if found is None or len(found[1]) <= 1:
        return False
    return not len(_inner_components(*found, min_glyph_px))


def repeated_pattern(rgb: np.ndarray, polygon: np.ndarray, pad: float = 0.25, min_count: int = 3) -> bool:
    """True when the box holds a row of identical rectangles (a building's windows, a tiled floor), not glyphs.

    Letters of one line differ in width and shape; windows repeat one outline. Counted: components fully
    inside the grown box; a pattern when there are ``min_count`` or more, all within 10 % of one size,
    each a quadrilateral filling its bounding box (repeated syllables of a sound effect are not), spanning
    most of the detection's length.
    """
    found = _box_ink(rgb, polygon, pad)
    if found is None:
        return False
    labels, stats = found
    inner = _inner_components(labels, stats, 4)
    if len(inner) < min_count:
        return False
    sizes = stats[inner][:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]].astype(np.float32)
    if np.any(sizes.std(axis=0) > 0.1 * sizes.mean(axis=0)):
        return False
    # the rectangles must make up the detection, not sit in one corner of a box that holds lettering
    x0, y0, x1, y1 = polygon_bounds(polygon)
    axis, length = (0, x1 - x0) if x1 - x0 >= y1 - y0 else (1, y1 - y0)
    starts = stats[inner][:, axis]
    ends = starts + stats[inner][:, 2 + axis]
    if ends.max() - starts.min() < 0.6 * length:
        return False
    for i in inner:
        x, y, cw, ch = stats[i, :4]
        contours, _ = cv2.findContours((labels[y:y + ch, x:x + cw] == i).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return False
        outline = max(contours, key=cv2.contourArea)
        corners = cv2.approxPolyDP(outline, 0.05 * cv2.arcLength(outline, True), True)
        if len(corners) != 4 or cv2.contourArea(outline) < 0.85 * (cw - 1) * (ch - 1):
            return False  # a glyph, however blocky (a syllable with a thick outline), is no quadrilateral
    return True


def drop_line_art(rgb: np.ndarray, polygons: list[np.ndarray], pad: float = 0.25,
                  lettering: Lettering | None = None) -> list[np.ndarray]:
    """The detections that are text, i.e. all but those with evidence against: no glyph inside their box grown
    by ``pad`` of its shorter side (line art), a row of identical rectangles (windows, tiles), or ``lettering``
    (LetterNet's map) seeing next to no lettering in it (halftone dots, a box laid over a figure). A detection
    ``lettering`` confirms is kept whatever the glyph rules say (lettering drawn over a figure joins its lines)."""
    return [p for p in polygons
            if (lettering is not None and lettering.confirms(p))
            or (not crosses_box_only(rgb, p, pad=pad) and not repeated_pattern(rgb, p, pad)
                and not (lettering is not None and lettering.denies(p)))]


# ---------------------------------------------------------------- removal

def stroke_width(polygon: np.ndarray) -> float:
    """How thick a text region is: the shorter side of its box for a quadrilateral (a detected line), and for
    an outline of any other shape (LetterNet's, where a sound effect and balloon lines may have run into one
    L-shaped region) at most twice its area over its perimeter, so its thin parts get a thin margin."""
    x0, y0, x1, y1 = polygon_bounds(polygon)
    short = min(x1 - x0, y1 - y0)
    if len(polygon) <= 4:
        return short
    contour = polygon.reshape(-1, 1, 2).astype(np.float32)
    perimeter = cv2.arcLength(contour, True)
    return min(short, 2.0 * cv2.contourArea(contour) / perimeter) if perimeter > 0 else short


def text_mask(shape: tuple[int, int], polygons: list[np.ndarray], dilate_px: int = 0,
              dilate_share: float = 0.0) -> np.ndarray:
    """uint8 mask (255 = text) of the filled polygons, each grown by ``dilate_px`` or by ``dilate_share`` of
    its thickness (:func:`stroke_width`), whichever is more (at most ``MAX_GROW_PX``): big lettering has
    outlines and shadows beyond the detected box."""
    mask = np.zeros(shape[:2], np.uint8)
    h, w = mask.shape
    for polygon in polygons:  # one at a time: fillPoly with several polygons leaves their overlaps unfilled
        points = np.round(polygon).astype(np.int32)
        x0, y0, x1, y1 = polygon_bounds(polygon)
        grow = min(max(dilate_px, int(round(dilate_share * stroke_width(polygon)))), MAX_GROW_PX)
        if grow <= 0:
            cv2.fillPoly(mask, [points], 255)
            continue
        # grow within the polygon's own window, so each polygon gets its own kernel
        wx0, wy0 = max(int(x0) - grow - 1, 0), max(int(y0) - grow - 1, 0)
        wx1, wy1 = min(int(np.ceil(x1)) + grow + 2, w), min(int(np.ceil(y1)) + grow + 2, h)
        if wx1 <= wx0 or wy1 <= wy0:
            continue
        window = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
        cv2.fillPoly(window, [points - [wx0, wy0]], 255)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask[wy0:wy1, wx0:wx1] |= cv2.dilate(window, kernel)
    return mask


def fill_flat(rgb: np.ndarray, mask: np.ndarray, ring: int = 3, share: float = 0.9,
              tolerance: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Fill each masked region that lies on a flat background with that background's colour.

    A region counts as on flat background when ``share`` of the pixels in a ``ring`` px band around it are
    within ``tolerance`` of their median colour (a balloon's outline crossing the band is the rest).
    Diffusion inpainting would drag such an outline into a big region as a dark smear (which a text
    detector then reads as lettering); a flat fill leaves paper. Returns the image and what is left to inpaint.
    """
    out, left = rgb.copy(), mask.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    h, w = mask.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    for i in range(1, n):
        x, y, cw, ch = stats[i, :4]
        x0, y0, x1, y1 = max(x - ring, 0), max(y - ring, 0), min(x + cw + ring, w), min(y + ch + ring, h)
        region = labels[y0:y1, x0:x1] == i
        band = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & (mask[y0:y1, x0:x1] == 0)
        pixels = rgb[y0:y1, x0:x1][band].astype(np.int16)
        if len(pixels) < 16:
            continue
        median = np.median(pixels, axis=0)
        if np.mean(np.all(np.abs(pixels - median) <= tolerance, axis=1)) >= share:
            out[y0:y1, x0:x1][region] = np.round(median).astype(np.uint8)
            left[y0:y1, x0:x1][region] = 0
    return out, left


def inpaint(rgb: np.ndarray, mask: np.ndarray, method: str = "ns", radius: int = 3) -> np.ndarray:
    """Fill the masked pixels: regions on flat background with its colour (:func:`fill_flat`), the rest from
    their surroundings by Navier-Stokes (``ns``) or Telea inpainting."""
    flag = cv2.INPAINT_NS if method == "ns" else cv2.INPAINT_TELEA
    filled, left = fill_flat(rgb, mask)
    return cv2.inpaint(filled, left, radius, flag) if left.any() else filled


def remove_text(rgb: np.ndarray, polygons: list[np.ndarray], *, dilate_px: int = 4, dilate_share: float = 0.0,
                method: str = "ns", radius: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Image with the text regions inpainted, and the mask used; no text found means no change."""
    mask = text_mask(rgb.shape, polygons, dilate_px, dilate_share)
    if not polygons or not mask.any():
        return rgb, mask
    return inpaint(rgb, mask, method, radius), mask
