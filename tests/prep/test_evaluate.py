import json

import numpy as np
import pytest

from fitad.prep.config import PrepConfig
from fitad.prep.evaluate import (TARGETS, aggregate, box_coverage, box_inside, box_iou, check_targets, evaluate,
                                 list_panels, mask_iou, match_boxes, score_characters)


def test_metric_helpers():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[:, :5], b[:, :] = 255, 255
    assert mask_iou(a, b) == 0.5 and mask_iou(a * 0, b * 0) == 1.0
    assert box_coverage([0, 0, 10, 10], a > 0) == 0.5
    assert box_inside([5, 5, 20, 20], [0, 0, 21, 21]) and not box_inside([5, 5, 30, 20], [0, 0, 21, 21])
    # 10x10 boxes shifted by 5 px in x: overlap 50, union 150
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_matching_is_one_to_one_best_pairs_first():
    truth = [[0, 0, 10, 10], [100, 0, 110, 10]]
    # one subject covers the first character exactly, a second one overlaps it at IoU 0.82, a third is far away
    found = [[0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]]
    assert match_boxes(truth, found) == {0: 1}
    assert match_boxes(truth, [[0, 0, 20, 10]]) == {0: 0}          # IoU exactly 0.5 counts
    assert match_boxes(truth, [[0, 0, 21, 10]]) == {}              # 100/210 < 0.5


def test_character_scores_split_figure_and_false_subjects():
    shape = (100, 100)
    char_mask = np.zeros(shape, bool)
    char_mask[10:90, 40:60] = True                                  # one figure, box 20x80 = 1600 px
    chars = [[40, 10, 60, 90]]
    # split by a balloon into head (600 px of it: IoU .375) and body (760 px: IoU .475), plus a narration box
    subjects = [[40, 10, 60, 40], [40, 52, 60, 90], [0, 0, 30, 8]]
    crops = [[20, 0, 80, 50], [20, 40, 80, 95], [0, 0, 30, 30]]
    split = score_characters(chars, [char_mask], subjects, crops)
    assert split["characters_found"] == 0 and split["character_iou"] == [0.475]
    assert split["whole_crops"] == 0                                # the body's crop misses the head
    assert split["false_subjects"] == 3 and split["false_subject_kinds"] == ["non_character", "piece", "piece"]

    merged = score_characters(chars, [char_mask], [[38, 8, 62, 92]], [[0, 0, 100, 100]])
    assert merged["characters_found"] == 1 and merged["whole_crops"] == 1 and merged["false_subjects"] == 0
    assert merged["character_iou"] == [round(1600 / (24 * 84), 4)]


def test_aggregate_by_kind_and_targets():
    panel = {"background": "plain", "text_boxes": 4, "text_boxes_found": 3, "text_area": 100, "residual_area": 10,
             "text_by_kind": {"bubble": {"boxes": 2, "found": 2}, "sfx": {"boxes": 2, "found": 1}},
             "characters": 2, "characters_found": 1, "character_iou": [1.0, 0.5], "whole_crops": 2,
             "false_subject_kinds": ["non_character"], "rejected": ["a narration box"], "iou": 0.9}
    overall = aggregate([panel, dict(panel, false_subject_kinds=[], rejected=[])])
    assert overall["text_recall"] == 0.75 and overall["text_recall_sfx"] == 0.5
    assert overall["text_recall_bubble"] == 1.0 and overall["text_recall_vertical"] is None
    assert overall["residual_text"] == 0.1 and overall["characters_found"] == 0.5
    assert overall["character_iou"] == 0.75 and overall["whole_character_crops"] == 1.0
    assert overall["false_subjects"] == 1 and overall["false_subjects_per_panel"] == 0.5
    assert overall["rejected_subjects"] == 1
    passed = check_targets(overall)
    assert "text_recall_vertical" not in passed                     # nothing to measure it on
    assert passed["whole_character_crops"] and not passed["text_recall"] and not passed["false_subjects_per_panel"]


def test_targets_are_the_issue_targets():
    assert TARGETS == {"text_recall": (">=", 0.95), "text_recall_vertical": (">=", 0.85),
                       "text_recall_sfx": (">=", 0.85), "residual_text": ("<=", 0.05),
                       "characters_found": (">=", 0.90), "character_iou": (">=", 0.80),
                       "whole_character_crops": (">=", 0.90), "false_subjects_per_panel": ("<=", 0.10)}


def test_evaluate_needs_panels(tmp_path):
    with pytest.raises(FileNotFoundError, match="no synth panels"):
        evaluate(PrepConfig(), tmp_path)


def test_quality_on_fitad_synth_meets_the_targets_it_can(synth_dir):
    """The floors are the targets, for the measures that reach them on these eight small panels. The character
    counts (characters found, whole crops, false subjects) do not: fitad.synth draws figures that touch each
    other (two panels here), which the stage keeps as one subject; whether that subject's box happens to reach
    IoU 0.5 with one of the two decides between a found character and a false piece. The styled panels below
    and benchmarks/prep.py (48 panels) hold those measures."""
    report = evaluate(PrepConfig(), synth_dir)
    o = report.overall
    assert o["panels"] == 8 and len(list_panels(synth_dir)) == 8 and report.errors == []
    assert o["text_recall"] >= 0.95 and o["text_recall_sfx"] >= 0.85 and o["residual_text"] <= 0.05
    assert o["character_iou"] >= 0.80 and o["mask_iou"] >= 0.80
    assert o["whole_character_crops"] <= o["characters_found"]          # a crop counts only for its own character
    assert report.backends["segmenter"].startswith("figurenet")
    assert json.loads(json.dumps(report.to_dict()))["passed"] == report.passed


def test_quality_on_styled_panels_meets_every_target(tmp_path_factory):
    """Sixteen fitad.synth_styles dev panels (seed 0: other fonts, vertical columns, SFX, narration boxes,
    buildings, balloons across figures): every target of the issue is a floor here."""
    from fitad.synth_styles import synthesize_styles

    folder = tmp_path_factory.mktemp("styled")
    synthesize_styles(folder, 16, seed=0, split="dev")
    report = evaluate(PrepConfig(), folder)
    o = report.overall
    assert o["panels"] == 16 and report.errors == []
    assert o["text_boxes_by_kind"].keys() >= {"bubble", "narration", "vertical", "sfx"}
    assert all(report.passed.values()) and len(report.passed) == len(TARGETS), report.passed


def test_a_broken_panel_is_named_and_the_others_are_scored(synth_dir, tmp_path):
    import shutil

    for i in range(2):
        for suffix in (".png", ".json"):
            shutil.copy(synth_dir / f"panel_000{i}{suffix}", tmp_path)
    (tmp_path / "masks").mkdir()
    for f in synth_dir.glob("masks/panel_000[01]_*"):
        shutil.copy(f, tmp_path / "masks")
    (tmp_path / "masks" / "panel_0001_subject.png").unlink()          # panel 1 lost its subject mask
    report = evaluate(PrepConfig(), tmp_path)
    assert [p["image"] for p in report.panels] == ["panel_0000.png"]
    assert len(report.errors) == 1 and report.errors[0].startswith("panel_0001.json: mask panel_0001_subject.png")


def test_residual_counts_detections_of_a_text_lines_size_only():
    from fitad.prep.evaluate import leftover_lines

    line = np.array([[100, 100], [300, 100], [300, 130], [100, 130]], np.float32)       # 200 x 30 of text
    on_line = line + [5, 0]                                                              # leftover lettering
    part = np.array([[250, 100], [300, 100], [300, 130], [250, 130]], np.float32)       # a leftover word
    half_panel = np.array([[0, 0], [400, 0], [400, 300], [0, 300]], np.float32)         # 20 x the line's area
    elsewhere = np.array([[10, 350], [60, 350], [60, 380], [10, 380]], np.float32)      # no text was there
    kept = leftover_lines([on_line, part, half_panel, elsewhere], [line], (400, 400))
    assert [k.tolist() for k in kept] == [on_line.tolist(), part.tolist()]
