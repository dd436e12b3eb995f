"""Kept pixels: placement, exact paste-back with a feathered rim, intrusion measurement, contact shadow."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from fitad.ads.composite import Layer, contact_shadow, contain_scale, edge_guide, intrusion, paste_back, place

H, W = 120, 160


def _noise(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _disc_mask(h=H, w=W, center=(80, 60), radius=25) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where((xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius ** 2, 255, 0).astype(np.uint8)


def _layer(rgb, mask, coverage=None) -> Layer:
    coverage = np.ones(mask.shape, bool) if coverage is None else coverage
    return Layer(rgb=rgb, coverage=coverage, mask=mask, box=(0, 0, mask.shape[1], mask.shape[0]), scale=1.0)


def _distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest kept pixel; 0 inside."""
    return ndimage.distance_transform_edt(mask == 0)


@pytest.mark.parametrize("feather", [0, 3, 6, 12])
def test_paste_back_exact_inside_untouched_beyond_feather(feather):
    generated, rgb, mask = _noise((H, W, 3), 1), _noise((H, W, 3), 2), _disc_mask()
    out = paste_back(generated, _layer(rgb, mask), feather)
    assert out.dtype == np.uint8 and out.shape == generated.shape
    inside = mask > 0
    np.testing.assert_array_equal(out[inside], rgb[inside])          # bit-identical copy
    far = _distance_outside(mask) > feather + 1
    np.testing.assert_array_equal(out[far], generated[far])          # alpha 0 there
    if feather == 0:
        np.testing.assert_array_equal(out[~inside], generated[~inside])


def test_paste_back_rim_blends_between_the_two():
    generated = np.zeros((H, W, 3), np.uint8)
    rgb = np.full((H, W, 3), 255, np.uint8)
    mask = _disc_mask()
    feather = 8
    out = paste_back(generated, _layer(rgb, mask), feather)
    dist = _distance_outside(mask)
    rim = (dist > 0) & (dist <= feather)
    values = out[..., 0].astype(float)
    assert (out[rim] > 0).all() and (out[rim] < 255).all()           # strictly between black and white
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    # fades with the distance from the mask: mean value per 1-px ring strictly decreasing
    rings = [values[(dist > d - 0.5) & (dist <= d + 0.5)].mean() for d in range(1, feather + 1)]
    assert all(a > b for a, b in zip(rings, rings[1:])), rings
    assert rings[0] > 150 and rings[-1] < 100


def test_paste_back_rim_only_where_the_photo_lies():
    generated, rgb, mask = _noise((H, W, 3), 3), _noise((H, W, 3), 4), _disc_mask()
    coverage = np.zeros((H, W), bool)
    coverage[:, :80] = True               # the photo covers only the left half (and the left half of the disc)
    mask = np.where(coverage, mask, 0).astype(np.uint8)
    out = paste_back(generated, _layer(rgb, mask, coverage), 10)
    np.testing.assert_array_equal(out[:, 80:], generated[:, 80:])
    np.testing.assert_array_equal(out[mask > 0], rgb[mask > 0])


def test_place_at_scale_one_copies_pixels(coffee):
    mask = np.zeros(coffee.shape[:2], np.uint8)
    mask[100:300, 150:450] = 255
    layer = place(coffee, mask, (800, 600), 1.0, (100, 50))
    assert layer.box == (100, 50, 700, 450) and layer.scale == 1.0
    assert layer.rgb.shape == (600, 800, 3) and layer.mask.shape == (600, 800)
    np.testing.assert_array_equal(layer.rgb[50:450, 100:700], coffee)
    np.testing.assert_array_equal(layer.mask[50:450, 100:700], mask)
    expected_coverage = np.zeros((600, 800), bool)
    expected_coverage[50:450, 100:700] = True
    np.testing.assert_array_equal(layer.coverage, expected_coverage)
    assert not layer.rgb[~expected_coverage].any() and not layer.mask[~expected_coverage].any()


def test_place_cuts_what_falls_off_the_canvas(coffee):
    mask = np.full(coffee.shape[:2], 255, np.uint8)
    layer = place(coffee, mask, (500, 300), 1.0, (-100, -50))
    assert layer.box == (0, 0, 500, 300)
    np.testing.assert_array_equal(layer.rgb, coffee[50:350, 100:600])
    layer = place(coffee, mask, (500, 300), 1.0, (300, 200))
    assert layer.box == (300, 200, 500, 300)
    np.testing.assert_array_equal(layer.rgb[200:, 300:], coffee[:100, :200])
    with pytest.raises(ValueError):
        place(coffee, mask, (500, 300), 1.0, (600, 0))


def test_place_shrinks_with_area_filter_and_keeps_a_crisp_mask(coffee):
    mask = np.zeros(coffee.shape[:2], np.uint8)
    cv2.circle(mask, (300, 200), 120, 255, -1)
    layer = place(coffee, mask, (400, 300), 0.5, (50, 50))
    assert layer.box == (50, 50, 350, 250)
    np.testing.assert_array_equal(layer.rgb[50:250, 50:350],
                                  cv2.resize(coffee, (300, 200), interpolation=cv2.INTER_AREA))
    assert set(np.unique(layer.mask)) == {0, 255}
    kept = layer.mask[50:250, 50:350] > 0
    assert abs(kept.mean() - (mask > 0).mean()) < 0.01


def test_contain_scale():
    assert contain_scale((512, 512), (1080, 1920)) == pytest.approx(1080 / 512)
    assert contain_scale((600, 400), (1200, 630)) == pytest.approx(630 / 400)
    w, h = 451, 300
    s = contain_scale((w, h), (800, 400))
    assert w * s <= 800 + 1e-9 and h * s <= 400 + 1e-9 and max(w * s / 800, h * s / 400) == pytest.approx(1.0)


def test_intrusion_zero_for_identical():
    rgb, mask = _noise((H, W, 3), 5), _disc_mask()
    assert intrusion(rgb.copy(), _layer(rgb, mask)) == {"changed_share": 0.0, "mean_abs_diff": 0.0}
    assert intrusion(rgb, _layer(rgb, np.zeros((H, W), np.uint8))) == {"changed_share": 0.0, "mean_abs_diff": 0.0}


def test_intrusion_measures_a_known_difference():
    rgb = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[0:10, 0:10] = 255                           # 100 kept pixels
    generated = rgb.copy()
    generated[10:, 10:] = 255                        # outside the mask: differs wildly, must not count
    generated[0:5, 0:5, 0] = 140                     # 25 pixels: +40 in one channel (above the 32 threshold)
    generated[5:10, 0:5, 2] = 90                     # 25 pixels: -10 in one channel (below it)
    result = intrusion(generated, _layer(rgb, mask))
    assert result["changed_share"] == pytest.approx(0.25)
    assert result["mean_abs_diff"] == pytest.approx((25 * 40 + 25 * 10) / (100 * 3), abs=0.005)
    assert intrusion(generated, _layer(rgb, mask), threshold=5)["changed_share"] == pytest.approx(0.5)


def test_contact_shadow_darkens_only_below_and_outside():
    rgb = np.full((200, 200, 3), 200, np.uint8)
    mask = np.zeros((200, 200), np.uint8)
    top, bottom, left, right = 40, 140, 60, 140      # the object: rows 40..139, columns 60..139
    mask[top:bottom, left:right] = 255
    out = contact_shadow(rgb, mask, 0.35)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out <= rgb).all()                                         # never brightens
    darker = (out < rgb).any(axis=2)
    assert darker.any()
    assert not darker[mask > 0].any()                                 # the object itself is untouched
    ys, _xs = np.nonzero(darker)
    assert ys.min() >= top + (bottom - top) // 2                      # only around the object's foot
    assert not darker[:top].any()
    # right under the object's bottom centre the surface is visibly darker
    assert out[bottom + 1, 100, 0] <= 200 * (1 - 0.35 * 0.5)
    # stronger shadow, darker ground
    assert contact_shadow(rgb, mask, 0.7)[bottom + 1, 100, 0] < out[bottom + 1, 100, 0]


def test_contact_shadow_no_op_cases():
    rgb = _noise((50, 50, 3), 6)
    mask = np.zeros((50, 50), np.uint8)
    np.testing.assert_array_equal(contact_shadow(rgb, mask), rgb)
    mask[10:30, 10:30] = 255
    np.testing.assert_array_equal(contact_shadow(rgb, mask, 0.0), rgb)


def test_edge_guide_marks_outlines():
    img = np.zeros((100, 100, 3), np.uint8)
    img[30:70, 30:70] = 255
    guide = edge_guide(img)
    assert guide.shape == (100, 100, 3) and guide.dtype == np.uint8
    assert set(np.unique(guide)) <= {0, 255}
    assert (guide[..., 0] == guide[..., 2]).all()
    edges = guide[..., 0] > 0
    assert edges[28:32, 35:65].any() and edges[68:72, 35:65].any()  # the square's top and bottom sides
    assert not edges[40:60, 40:60].any() and not edges[:20].any()     # flat areas have none
