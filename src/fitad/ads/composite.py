"""Putting kept pixels back: placement on the canvas, exact paste-back with a feathered edge, contact shadow.

Inside a keep mask the result holds the placed layer's pixels *exactly* (copied, never blended). Outside the
mask, within ``feather_px``, the layer fades into the generated image, hiding the seam: for a face that rim is
the photo around it; for a product cut out of its photo it is the product's own edge colours carried outward
(:func:`extend_edges`). The layer is the source photo at the scale it was placed; at scale 1 those are the
file's own pixels.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fitad.ads.formats import resize

Box = tuple[int, int, int, int]


@dataclasses.dataclass
class Layer:
    """A photo placed on a canvas: its pixels and keep mask at canvas size, and where it went."""

    rgb: np.ndarray          # canvas H x W x 3; the placed photo (outside it: zeros)
    coverage: np.ndarray     # canvas H x W bool; where the photo lies
    mask: np.ndarray         # canvas H x W uint8; 255 = keep exactly
    box: Box                 # where the photo lies on the canvas
    scale: float


def place(rgb: np.ndarray, mask: np.ndarray, canvas: tuple[int, int], scale: float,
          origin: tuple[int, int]) -> Layer:
    """Put ``rgb`` (and its keep ``mask``) on a ``canvas`` (w, h) at ``scale`` with its top-left at ``origin``.

    Parts that fall off the canvas are cut. The mask is resized with nearest-neighbour so kept pixels stay a
    crisp set; at ``scale == 1`` the photo's pixels are copied unchanged.
    """
    cw, ch = canvas
    sw, sh = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
    photo = rgb if (sw, sh) == (rgb.shape[1], rgb.shape[0]) else resize(rgb, sw, sh)
    keep = mask if (sw, sh) == (mask.shape[1], mask.shape[0]) else \
        cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
    ox, oy = origin
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(cw, ox + sw), min(ch, oy + sh)
    if x0 >= x1 or y0 >= y1:
        raise ValueError("the placed photo lies entirely outside the canvas")
    out_rgb = np.zeros((ch, cw, 3), np.uint8)
    out_mask = np.zeros((ch, cw), np.uint8)
    coverage = np.zeros((ch, cw), bool)
    out_rgb[y0:y1, x0:x1] = photo[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    out_mask[y0:y1, x0:x1] = keep[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    coverage[y0:y1, x0:x1] = True
    return Layer(rgb=out_rgb, coverage=coverage, mask=out_mask, box=(x0, y0, x1, y1), scale=scale)


def contain_scale(src: tuple[int, int], box: tuple[int, int]) -> float:
    """The uniform scale that fits ``src`` (w, h) inside ``box`` (w, h)."""
    return min(box[0] / src[0], box[1] / src[1])


def feather_alpha(mask: np.ndarray, feather_px: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """1.0 inside ``mask``, falling linearly to 0 at ``feather_px`` outside it (only where ``allowed``)."""
    inside = mask > 0
    if feather_px <= 0:
        return inside.astype(np.float32)
    distance = cv2.distanceTransform(np.where(inside, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.clip(1.0 - distance / float(feather_px + 1), 0.0, 1.0).astype(np.float32)
    if allowed is not None:
        alpha[~allowed] = 0.0
    alpha[inside] = 1.0
    return alpha


def extend_edges(rgb: np.ndarray, mask: np.ndarray, px: int) -> np.ndarray:
    """``rgb`` with every pixel within ``px`` outside ``mask`` set to the colour of its nearest masked pixel.

    Gives a cut-out a soft rim of its own edge colours to fade into a new background, instead of a rim of the
    old background (a halo) or of white (a fringe).
    """
    inside = mask > 0
    if px <= 0 or not inside.any() or inside.all():
        return rgb.copy()
    distance, labels = cv2.distanceTransformWithLabels(np.where(inside, 0, 255).astype(np.uint8), cv2.DIST_L2, 5,
                                                       labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(inside)  # zero pixels are labelled 1.. in row-major order, the order np.nonzero gives
    lookup_y = np.zeros(len(ys) + 1, np.int64)
    lookup_x = np.zeros(len(xs) + 1, np.int64)
    lookup_y[1:], lookup_x[1:] = ys, xs
    band = (~inside) & (distance <= px + 1)
    out = rgb.copy()
    nearest = labels[band]
    out[band] = rgb[lookup_y[nearest], lookup_x[nearest]]
    return out


def paste_back(generated: np.ndarray, layer: Layer, feather_px: int) -> np.ndarray:
    """``generated`` with ``layer``'s kept pixels copied back exactly and a feathered rim outside them."""
    alpha = feather_alpha(layer.mask, feather_px, allowed=layer.coverage)
    blend = generated.astype(np.float32) * (1 - alpha[..., None]) + layer.rgb.astype(np.float32) * alpha[..., None]
    out = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    inside = layer.mask > 0
    out[inside] = layer.rgb[inside]  # exact copy: no float round trip inside the mask
    return out


def contact_shadow(rgb: np.ndarray, mask: np.ndarray, strength: float = 0.35) -> np.ndarray:
    """Darken a soft ellipse under the bottom of ``mask`` (outside it), so the product sits on the surface."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0 or strength <= 0:
        return rgb.copy()
    x0, x1, y1 = xs.min(), xs.max(), ys.max()
    width, height = x1 - x0 + 1, ys.max() - ys.min() + 1
    shadow = np.zeros(mask.shape, np.float32)
    centre = (int((x0 + x1) / 2), int(y1 - 0.02 * height))
    axes = (max(2, int(width * 0.48)), max(2, int(height * 0.07)))
    cv2.ellipse(shadow, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    k = max(3, int(axes[1] * 1.5) | 1)
    shadow = cv2.GaussianBlur(shadow, (k * 2 + 1, k * 2 + 1), 0)
    shadow[mask > 0] = 0.0
    return np.clip(rgb.astype(np.float32) * (1 - strength * shadow[..., None]), 0, 255).astype(np.uint8)


def intrusion(generated: np.ndarray, layer: Layer, threshold: int = 32) -> dict[str, float]:
    """How far the generated image strayed inside the kept area before paste-back.

    ``changed_share``: share of kept pixels whose largest channel difference exceeds ``threshold``;
    ``mean_abs_diff``: mean absolute difference there (0-255).
    """
    inside = layer.mask > 0
    if not inside.any():
        return {"changed_share": 0.0, "mean_abs_diff": 0.0}
    diff = np.abs(generated[inside].astype(np.int16) - layer.rgb[inside].astype(np.int16))
    return {"changed_share": round(float((diff.max(axis=1) > threshold).mean()), 4),
            "mean_abs_diff": round(float(diff.mean()), 2)}


def edge_guide(rgb: np.ndarray) -> np.ndarray:
    """A Canny edge map (white on black, 3 channels) of ``rgb``: the body-shape guide for a ControlNet."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 80, 160)
    return np.repeat(edges[..., None], 3, axis=2)
