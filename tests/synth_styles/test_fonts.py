"""Font groups, holdout-only fonts, glyph checks and the fallback to the bundled font."""

from __future__ import annotations

from pathlib import Path

import pytest

import fitad
from fitad.synth_styles import available_fonts, render_panel
from fitad.synth_styles import fonts as font_mod
from fitad.synth_styles.writer import HOLDOUT_SEED_OFFSET

NANUM = Path("/usr/share/fonts/truetype/nanum")
DEJAVU_SERIF = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
BUNDLED = Path(fitad.__file__).parent / "assets/fonts/FitadGothic-Bold.ttf"
HOLDOUT_FILES = ("NanumPen.ttf", "NanumSquareR.ttf", "NanumSquareRoundR.ttf")
LATIN_ONLY_PREFIXES = ("DejaVu", "Liberation", "ComicNeue")


def _reserved(name: str) -> bool:
    return name.startswith("NanumPen") or name.startswith("NanumSquare")


def _fonts_in(seeds, split) -> list[str]:
    return [t["font"] for s in seeds for t in render_panel(s, split).meta["texts"]]


def test_groups_always_offer_the_bundled_font():
    for split in ("dev", "holdout"):
        groups = available_fonts(split)
        assert {"serif", "brush", "handwritten", "gothic"} <= set(groups)
        assert [Path(p) for p in groups["bundled"]] == [BUNDLED.resolve()]
        assert all(Path(p).is_file() for paths in groups.values() for p in paths)
    assert not any(_reserved(Path(p).name) for paths in available_fonts("dev").values() for p in paths)
    with pytest.raises(ValueError, match="split"):
        available_fonts("train")


@pytest.mark.skipif(not (NANUM / "NanumPen.ttf").is_file(), reason="Debian fonts-nanum (NanumPen.ttf) not installed")
def test_holdout_only_fonts_are_used_in_holdout_and_never_in_dev():
    held = [Path(p).name for paths in available_fonts("holdout").values() for p in paths]
    assert any(name in held for name in HOLDOUT_FILES)
    dev = _fonts_in(range(12), "dev")
    holdout = _fonts_in(range(HOLDOUT_SEED_OFFSET, HOLDOUT_SEED_OFFSET + 8), "holdout")
    assert dev and not any(_reserved(name) for name in dev)
    assert any(_reserved(name) for name in holdout)


@pytest.mark.skipif(not DEJAVU_SERIF.is_file(), reason="Debian fonts-dejavu (DejaVuSerif.ttf) not installed")
def test_glyph_check_tells_latin_only_fonts_from_hangul_fonts():
    assert font_mod.has_glyph(str(DEJAVU_SERIF), "A")
    assert not font_mod.has_glyph(str(DEJAVU_SERIF), "쾅")
    assert font_mod.has_glyph(str(BUNDLED), "쾅")
    assert not font_mod.has_glyph(str(BUNDLED), "\U0001F600")  # an emoji the subset does not have


def test_korean_text_never_uses_a_latin_only_font():
    texts = [t for s in range(20) for t in render_panel(s).meta["texts"] if t["lang"] == "ko"]
    assert texts
    assert not [t for t in texts if t["font"].startswith(LATIN_ONLY_PREFIXES)]


def test_falls_back_to_the_bundled_font_without_system_fonts(tmp_path, monkeypatch):
    monkeypatch.setattr(font_mod, "SEARCH_ROOTS", (tmp_path,))
    groups = available_fonts("holdout")
    assert all(groups[style] == [] for style in ("serif", "brush", "handwritten", "gothic"))
    for seed in range(4):
        meta = render_panel(seed, "dev").meta
        assert meta["texts"]
        assert meta["fonts_used"] == [BUNDLED.name]
    assert render_panel(HOLDOUT_SEED_OFFSET, "holdout").meta["fonts_used"] == [BUNDLED.name]
