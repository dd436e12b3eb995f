import json

import numpy as np
import pytest

from fitad.prep.config import PrepConfig
from fitad.prep.evaluate import (TARGETS, aggregate, box_coverage, box_inside, check_targets, evaluate, list_panels,
                                 mask_iou)


def test_metric_helpers():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[:, :5], b[:, :]= 255, 255
    assert mask_iou(a, b) == 0.5 and mask_iou(a * 0, b * 0) == 1.0
    assert box_coverage([0, 0, 10, 10], a > 0) == 0.5
    assert box_inside([5, 5, 20, 20], [0, 0, 21, 21]) and not box_inside([5, 5, 30, 20], [0, 0, 21, 21])
    overall = aggregate([{"background": "plain", "text_boxes": 2, "text_boxes_found": 1, "text_area": 100,
                          "residual_area": 10, "characters": 1, "characters_in_crop": 1, "iou": 0.9}])
    assert overall["text_box_recall"] == 0.5 and overall["residual_text"] == 0.1
    assert check_targets(overall) == {"text_box_recall": False, "residual_text": False, "crop_recall": True,
                                      "mean_iou": True}


def test_quality_meets_the_targets_on_synth(synth_dir):
    """The floors are the targets themselves: recall >= .90, residual <= .05, crop recall >= .95, IoU >= .80."""
    assert TARGETS == {"text_box_recall": (">=", 0.90), "residual_text": ("<=", 0.05),
                       "crop_recall": (">=", 0.95), "mean_iou": (">=", 0.80)}
    report = evaluate(PrepConfig(), synth_dir)
    o = report.overall
    assert o["panels"] == 8 and len(list_panels(synth_dir)) == 8
    assert o["text_box_recall"] >= 0.90
    assert o["residual_text"] <= 0.05
    assert o["crop_recall"] >= 0.95
    assert o["mean_iou"] >= 0.80
    assert report.passed == {k: True for k in TARGETS} and report.all_passed
    assert report.backends["segmenter"] == "opencv"
    assert json.loads(json.dumps(report.to_dict()))["passed"] == report.passed


def test_evaluate_needs_panels(tmp_path):
    with pytest.raises(FileNotFoundError, match="no synth panels"):
        evaluate(PrepConfig(), tmp_path)
