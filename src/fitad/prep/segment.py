"""Subject segmentation: rembg models when their file is on disk, else FigureNet (a small network bundled
with fitad, :mod:`fitad.prep.figurenet`) for drawn panels, and an OpenCV-only segmenter for photos or on request.

A segmenter returns a uint8 mask (255 = subject) at the resolution of the image it was given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fitad.prep.config import PrepConfig
from fitad.prep.text import downscale


class Segmenter(Protocol):
    name: str

    def segment(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        """uint8 mask, 255 where the subject is, same height and width as ``rgb``.

        ``text_mask`` (255 where text was removed) lets a segmenter recognise speech balloons.
        """
        ...


# ---------------------------------------------------------------- rembg

def rembg_homes() -> list[Path]:
    """Where rembg looks for model files: ``$U2NET_HOME`` when set, else ``$REMBG_HOME`` (default
    ``$XDG_DATA_HOME/rembg`` or ``~/.rembg``) and the legacy ``~/.u2net``."""
    if os.environ.get("U2NET_HOME"):
        return [Path(os.environ["U2NET_HOME"]).expanduser()]
    xdg = os.environ.get("XDG_DATA_HOME")
    default = Path(xdg) / "rembg" if xdg else Path("~/.rembg")
    return [Path(os.environ.get("REMBG_HOME") or default).expanduser(), Path("~/.u2net").expanduser()]


def rembg_home() -> Path:
    return rembg_homes()[0]


def rembg_model_file(model: str) -> Path | None:
    """The on-disk file for a rembg model name, or for a custom ``.onnx`` path; None if absent.

    Checked without importing rembg (slow to import) and without its downloader, so ``auto`` never
    triggers a download. A relative ``.onnx`` path is taken relative to the rembg home.
    """
    if model.endswith(".onnx"):
        path = Path(model).expanduser()
        path = path if path.is_absolute() else rembg_home() / path
        return path if path.is_file() else None
    for home in rembg_homes():
        for candidate in (home / "models" / model / f"{model}.onnx", home / f"{model}.onnx"):
            if candidate.is_file():
                return candidate
    return None


class RembgSegmenter:
    """rembg ``new_session(model)`` + ``remove(..., only_mask=True)``, thresholded to a binary mask.

    ``model`` is a rembg model name (``isnet-anime``, ``u2net``, ``birefnet-general``...) whose file
    is in U2NET_HOME, or the path of a custom U^2-Net ``.onnx`` file (run through ``u2net_custom``).
    """

    name = "rembg"

    def __init__(self, config: PrepConfig, threads: int | None = None):
        model_file = rembg_model_file(config.rembg_model)
        if model_file is None:
            raise FileNotFoundError(
                f"rembg model {config.rembg_model!r} not found in {rembg_home()} (U2NET_HOME); downloads are "
                "disabled: copy the .onnx file there, or use prep.segmenter=opencv")
        import onnxruntime as ort
        from rembg import new_session

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if config.rembg_model.endswith(".onnx"):
            self.model = "u2net_custom"
            self._session = new_session("u2net_custom", sess_opts=opts, model_path=str(model_file),
                                        providers=["CPUExecutionProvider"])
        else:
            self.model = config.rembg_model
            self._session = new_session(config.rembg_model, sess_opts=opts,
                                        providers=["CPUExecutionProvider"])
        self.threshold = config.mask_threshold

    def segment(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        from PIL import Image
        from rembg import remove

        soft = np.asarray(remove(Image.fromarray(rgb), session=self._session, only_mask=True))
        if soft.ndim == 3:
            soft = soft[..., 0]
        return np.where(soft >= self.threshold, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------- OpenCV-only

def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill regions enclosed by the mask (flood fill from a border that is guaranteed background)."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 255)
    return mask | cv2.bitwise_not(flood)[1:-1, 1:-1]


def drop_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def pool_any(binary: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale a boolean map to ``size`` (w, h) so that thin lines survive: a cell is set if any
    pixel under it is."""
    if binary.shape[::-1] == tuple(size):
        return binary
    return cv2.resize(binary.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0


def _band_inner_edge(lines: np.ndarray, start: bool) -> int | None:
    """Index just inside the run of consecutive line indices that touches the start/end of ``lines``."""
    if not len(lines):
        return None
    if start:
        edge = int(lines.min())
        while edge + 1 in lines:
            edge += 1
        return edge + 1
    edge = int(lines.max())
    while edge - 1 in lines:
        edge -= 1
    return edge


def frame_interior(dark: np.ndarray, min_len: float = 0.85, edge_zone: float = 0.15) -> tuple[int, int, int, int]:
    """Inside of a panel frame: straight dark lines spanning ``min_len`` of the image near its edges.

    Returns ``(x0, y0, x1, y1)``; sides without a frame line stay at the image edge.
    """
    h, w = dark.shape
    d = dark.astype(np.uint8)
    horiz = cv2.morphologyEx(d, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (int(w * min_len), 1)))
    vert = cv2.morphologyEx(d, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, int(h * min_len))))
    rows, cols = np.flatnonzero(horiz.any(axis=1)), np.flatnonzero(vert.any(axis=0))
    top = _band_inner_edge(rows[rows < h * edge_zone], start=True)
    bottom = _band_inner_edge(rows[rows >= h * (1 - edge_zone)], start=False)
    left = _band_inner_edge(cols[cols < w * edge_zone], start=True)
    right = _band_inner_edge(cols[cols >= w * (1 - edge_zone)], start=False)
    return left or 0, top or 0, right or w, bottom or h


def picture_frame(rgb: np.ndarray, max_side: int = 768, dark_level: int = 80) -> tuple[int, int, int, int]:
    """Inside of the panel's frame line in ``rgb``'s pixels (the whole image when it has none).

    Found on a copy pooled to ``max_side`` (thin lines kept), so large images cost no more than small ones.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    dark = pool_any(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < dark_level, size)
    x0, y0, x1, y1 = frame_interior(dark)
    sx, sy = w / size[0], h / size[1]
    return (min(int(np.ceil(x0 * sx)), w), min(int(np.ceil(y0 * sy)), h),
            max(int(np.floor(x1 * sx)), 0), max(int(np.floor(y1 * sy)), 0))


def background_palette(lab_pixels: np.ndarray, k: int = 4, min_share: float = 0.15) -> tuple[np.ndarray, float]:
    """Main colours of the background (k-means in Lab) and their spread (median distance to them).

    Clusters with less than ``min_share`` of the pixels are dropped: they come from a leak into a
    figure through a gap in its outline, not from the background.
    """
    sample = lab_pixels[:: max(1, len(lab_pixels) // 4000)].astype(np.float32)
    k = max(1, min(k, len(sample)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _c, labels, centers = cv2.kmeans(sample, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    centers = centers[counts >= min_share * len(sample)]
    dist = np.min(np.linalg.norm(sample[:, None, :] - centers[None], axis=2), axis=1)
    return centers, float(np.median(dist))


class OpenCVSegmenter:
    """Segmenter with no model file, in two stages.

    1. Line art (manga, webtoon, illustrations): figures are closed regions bounded by dark outlines.
       Dark pixels are barriers; the panel frame is found and removed; the background is the largest
       barrier-free region touching the frame plus every other frame-touching region of its colours.
       Enclosed light regions that held detected text are speech balloons and are dropped with their
       outline. Holes are filled and thin leftovers opened away.
    2. If that finds nothing (photos, no outlines): a colour-distance-from-border mask refined with
       GrabCut.

    Works on a copy downscaled to ``segment_max_side``; dark lines are found at full resolution so
    thin outlines survive the downscale. The mask is upsampled back.
    """

    name = "opencv"
    dark_level = 80          # gray level below which a pixel is outline/ink
    colour_tolerance = 10.0  # Lab distance to the background palette, plus 2x its spread
    light_level = 200        # Lab L (0..255) of a balloon's paper
    ring_px = 4              # balloon outline width removed with the balloon (downscaled px)

    def __init__(self, config: PrepConfig, grabcut_iters: int = 4, content: str = "auto"):
        if content not in ("auto", "photo"):
            raise ValueError(f"content must be 'auto' or 'photo', got {content!r}")
        self.max_side = config.segment_max_side
        self.grabcut_iters = grabcut_iters
        self.content = content  # photo: skip the line-art stage (product and people photos)

    # ------------------------------------------------------------ line art

    def line_art_mask(self, small: np.ndarray, dark: np.ndarray, text: np.ndarray) -> np.ndarray:
        h, w = dark.shape
        lab = cv2.cvtColor(cv2.GaussianBlur(small, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
        x0, y0, x1, y1 = frame_interior(dark)
        inside = np.zeros((h, w), bool)
        inside[y0:y1, x0:x1] = True
        free = ~dark & inside
        n, labels, stats, _ = cv2.connectedComponentsWithStats(free.astype(np.uint8), connectivity=4)
        edge = np.zeros((h, w), bool)
        edge[y0, x0:x1] = edge[y1 - 1, x0:x1] = edge[y0:y1, x0] = edge[y0:y1, x1 - 1] = True
        touching = np.zeros(n, bool)
        touching[np.unique(labels[edge & free])] = True
        touching[0] = False
        if not touching.any():
            return np.zeros((h, w), np.uint8)
        areas = np.where(touching, stats[:, cv2.CC_STAT_AREA], 0)
        main = int(np.argmax(areas))
        centers, spread = background_palette(lab[labels == main])
        threshold = self.colour_tolerance + 2.0 * spread
        foreground = np.ones(n, bool)
        foreground[[0, main]] = False
        balloon = np.zeros(n, bool)
        _nt, text_labels, text_stats, _ = cv2.connectedComponentsWithStats(text.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            if i == main:
                continue
            x, y, cw, ch, area = stats[i]
            region = labels[y:y + ch, x:x + cw] == i
            median = np.median(lab[y:y + ch, x:x + cw][region], axis=0)
            if touching[i]:  # cut by the frame: background only if it has the background's colour
                foreground[i] = np.min(np.linalg.norm(centers - median, axis=1)) > threshold
            elif median[0] > self.light_level and np.all(np.abs(median[1:] - 128) < 14):
                balloon[i] = self._held_text(region, text[y:y + ch, x:x + cw],
                                             text_labels[y:y + ch, x:x + cw], text_stats)
        mask = (foreground[labels] & ~balloon[labels] & free) | (dark & inside)
        balloons = balloon[labels] & free
        if balloons.any():
            k = 2 * self.ring_px + 1
            ring = cv2.dilate(balloons.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
            mask &= ~(ring & dark)
        mask = fill_holes(mask.astype(np.uint8) * 255)
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))

    @staticmethod
    def _held_text(region: np.ndarray, text: np.ndarray, text_labels: np.ndarray, text_stats: np.ndarray) -> bool:
        """True if at least half of every text blob touching the (hole-filled) region lies inside it."""
        filled = fill_holes(region.astype(np.uint8) * 255) > 0
        inside = np.count_nonzero(filled & text)
        if not inside:
            return False
        blobs = np.unique(text_labels[filled & text])
        return inside >= 0.5 * text_stats[blobs, cv2.CC_STAT_AREA].sum()

    # ------------------------------------------------------------ photos

    def colour_mask(self, small: np.ndarray) -> np.ndarray:
        """Pixels far from the colours of the image border, closed, filled and refined by GrabCut."""
        smooth = cv2.medianBlur(small, 5)
        lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
        frame = np.concatenate([lab[:3].reshape(-1, 3), lab[-3:].reshape(-1, 3),
                                lab[:, :3].reshape(-1, 3), lab[:, -3:].reshape(-1, 3)])
        centers, spread = background_palette(frame, k=3, min_share=0.05)
        dist = np.min(np.linalg.norm(lab[:, :, None, :] - centers[None, None], axis=3), axis=2)
        rough = (dist > 18 + 2.0 * spread).astype(np.uint8) * 255
        k = max(3, max(small.shape[:2]) // 64) | 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        rough = fill_holes(cv2.morphologyEx(rough, cv2.MORPH_CLOSE, kernel, iterations=2))
        rough = drop_small_components(cv2.morphologyEx(rough, cv2.MORPH_OPEN, kernel), int(0.002 * rough.size))
        return self.grabcut(small, rough, kernel)

    def grabcut(self, small: np.ndarray, rough: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """GrabCut seeded with the rough mask: eroded core = sure subject, far outside = sure background."""
        if not rough.any():
            return rough
        seeds = np.full(rough.shape, cv2.GC_BGD, np.uint8)
        seeds[cv2.dilate(rough, kernel, iterations=2) > 0] = cv2.GC_PR_BGD
        seeds[rough > 0] = cv2.GC_PR_FGD
        seeds[cv2.erode(rough, kernel, iterations=2) > 0] = cv2.GC_FGD
        if not (seeds == cv2.GC_BGD).any():
            return rough
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(small, seeds, None, bgd, fgd, self.grabcut_iters, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # degenerate colour models (e.g. a flat image): keep the rough mask
            return rough
        refined = np.where(np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)), 255, 0).astype(np.uint8)
        return drop_small_components(fill_holes(refined), int(0.002 * refined.size))

    def photo_mask(self, small: np.ndarray, inset: float = 0.04) -> np.ndarray:
        """The framed subject of a photo: GrabCut from a rectangle just inside the border, holes filled.

        Product shots put the subject in the frame with background around it; the border strip seeds the
        background model, so a subject that touches the frame is cut there. Components under 15 % of the
        largest are dropped (reflections, crumbs).
        """
        h, w = small.shape[:2]
        dx, dy = max(1, int(w * inset)), max(1, int(h * inset))
        seeds = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(small, seeds, (dx, dy, w - 2 * dx, h - 2 * dy), bgd, fgd, self.grabcut_iters + 1,
                        cv2.GC_INIT_WITH_RECT)
        except cv2.error:  # a flat image: no colour model to fit, so no subject
            return np.zeros((h, w), np.uint8)
        mask = np.where(np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)), 255, 0).astype(np.uint8)
        k = max(3, max(h, w) // 100) | 1
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return mask
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.zeros(n, bool)
        keep[1:] = areas >= 0.15 * areas.max()
        return fill_holes(np.where(keep[labels], 255, 0).astype(np.uint8))

    # ------------------------------------------------------------ entry

    def segment(self, rgb: np.ndarray, text_mask: np.ndarray | None = None) -> np.ndarray:
        cv2.setRNGSeed(0)  # GrabCut and k-means draw from OpenCV's (per-thread) RNG: same image, same mask
        height, width = rgb.shape[:2]
        small, scale = downscale(rgb, self.max_side)
        size = (small.shape[1], small.shape[0])
        dark = pool_any(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < self.dark_level, size)
        text = pool_any(text_mask > 0, size) if text_mask is not None else np.zeros(dark.shape, bool)
        if self.content == "photo":
            mask = self.photo_mask(small)
        else:
            mask = self.line_art_mask(small, dark, text)
            if np.count_nonzero(mask) < 0.002 * mask.size:
                mask = self.colour_mask(small)
        if scale < 1.0:
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
            mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
        return mask


def figurenet_file(config: PrepConfig) -> Path:
    """The FigureNet ONNX file: ``prep.figurenet_model`` when set, else the one bundled with the package."""
    from fitad.prep.figurenet import BUNDLED

    return Path(config.figurenet_model).expanduser() if config.figurenet_model else BUNDLED


def resolve_segmenter(config: PrepConfig, content: str = "auto") -> str:
    """The backend ``config.segmenter`` means now: ``auto`` is rembg when its model file is present, else
    FigureNet for drawn panels (its file ships with the package) and OpenCV for photos."""
    if config.segmenter != "auto":
        return config.segmenter
    if rembg_model_file(config.rembg_model) is not None:
        return "rembg"
    return "figurenet" if content != "photo" and figurenet_file(config).is_file() else "opencv"


def make_segmenter(config: PrepConfig, threads: int | None = None, content: str = "auto") -> tuple[Segmenter, str]:
    """The configured segmenter and a note on why (``auto``: rembg when its model file is present, else
    FigureNet on drawn panels).

    ``content="photo"`` tells ``auto`` and the OpenCV segmenter that the inputs are photographs (ads), not
    line art: FigureNet, trained on drawn panels, is not used for them.
    """
    choice = config.segmenter
    resolved = resolve_segmenter(config, content)
    if choice == "rembg":
        return RembgSegmenter(config, threads=threads), f"rembg:{config.rembg_model} (configured)"
    if resolved == "rembg":
        seg = RembgSegmenter(config, threads=threads)
        return seg, f"rembg:{config.rembg_model} (auto: model file in {rembg_home()})"
    if resolved == "figurenet":
        from fitad.prep.figurenet import FigureNetSegmenter

        path = figurenet_file(config)
        why = "configured" if choice == "figurenet" else f"auto: no rembg model {config.rembg_model!r} in {rembg_home()}"
        return FigureNetSegmenter(path, threads=threads), f"figurenet:{path.name} ({why})"
    why = "configured" if choice == "opencv" else \
        f"auto: no rembg model {config.rembg_model!r} in {rembg_home()}, embedded default"
    return OpenCVSegmenter(config, content=content), f"opencv{'-photo' if content == 'photo' else ''} ({why})"
