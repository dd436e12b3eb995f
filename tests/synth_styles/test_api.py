"""synthesize_styles / render_panel: determinism, seeds per split, argument checks, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fitad.cli import cli
from fitad.synth_styles import StyledPanel, render_panel, synthesize_styles


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_panel(tmp_path):
    first = synthesize_styles(tmp_path / "a", 3, seed=7)
    synthesize_styles(tmp_path / "b", 3, seed=7)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert [p.name for p in first] == ["panel_0000.png", "panel_0001.png", "panel_0002.png"]
    assert not [p for p in (tmp_path / "a").rglob(".*")]  # no temporary files left behind
    a, b = render_panel(11), render_panel(12)
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)


def test_panel_does_not_depend_on_n_and_redraws_from_its_seed(tmp_path):
    synthesize_styles(tmp_path, 2, seed=5)
    meta = json.loads((tmp_path / "panel_0001.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 6
    again = render_panel(meta["seed"], meta["split"])
    assert isinstance(again, StyledPanel)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "panel_0001.png")), again.image)
    assert again.meta == {k: v for k, v in meta.items() if k not in ("image", "subject_mask", "characters")} | {
        "characters": [{k: v for k, v in c.items() if k != "mask"} for c in meta["characters"]]}
    assert len(again.character_masks) == len(meta["characters"])
    assert all(m.dtype == np.uint8 and set(np.unique(m).tolist()) <= {0, 255} for m in again.character_masks)


def test_holdout_has_its_own_seed_range(tmp_path):
    synthesize_styles(tmp_path, 1, seed=3, split="holdout")
    meta = json.loads((tmp_path / "panel_0000.json").read_text(encoding="utf-8"))
    assert (meta["split"], meta["seed"]) == ("holdout", 1_000_003 + 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be"), ({"n": 2.5}, "n must be"), ({"n": 1, "split": "test"}, "split must be"),
    ({"n": 1, "seed": -1}, "seed must be"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize_styles(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="split must be"):
        render_panel(0, "train")


def test_cli_writes_a_holdout_set(tmp_path):
    out = tmp_path / "styles"
    result = CliRunner().invoke(cli, ["data", "synth-styles", "--out", str(out), "--n", "2", "--seed", "4",
                                      "--split", "holdout", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 holdout panels" in result.output and "1000007..1000008" in result.output
    for index in range(2):
        meta = json.loads((out / f"panel_{index:04d}.json").read_text(encoding="utf-8"))
        assert meta["split"] == "holdout" and meta["seed"] == 1_000_007 + index
        assert Image.open(out / meta["image"]).mode == "RGB"
        assert Image.open(out / meta["subject_mask"]).mode == "L"
        assert all((out / c["mask"]).is_file() for c in meta["characters"])


def test_cli_help_and_bad_arguments(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(cli, ["data", "synth-styles", "--help"]).output
    assert "never used for tuning" in help_text and "holdout" in help_text and "fonts" in help_text
    for args, needle in ((["--n", "0"], "--n"), (["--split", "test"], "--split"), (["--seed", "-2"], "--seed")):
        result = runner.invoke(cli, ["data", "synth-styles", "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and needle in result.output, result.output
    assert not list(tmp_path.iterdir())
