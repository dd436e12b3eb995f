"""The bundled Korean font: present, renamed as its license asks, and it really draws Hangul."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fitad.fonts import FAMILY, default_font_path, load_font, subset_codepoints


def _render(text: str, size: int = 40, path=None) -> np.ndarray:
    font = load_font(size, path)
    img = Image.new("L", (size * (len(text) + 1), size * 2), 0)
    ImageDraw.Draw(img).text((4, 4), text, font=font, fill=255)
    return np.asarray(img)


def test_default_font_ships_with_its_license():
    path = default_font_path()
    assert path.suffix == ".ttf" and path.stat().st_size < 1.5 * 1024 * 1024
    license_text = (path.parent / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE" in license_text and "Reserved Font Name" in license_text


def test_hangul_renders_as_distinct_real_glyphs():
    ga, na = _render("가"), _render("나")
    assert ga.any() and na.any()
    assert not np.array_equal(ga, na)
    notdef = _render("\ue000")                     # private use: not in the font, draws .notdef
    assert not np.array_equal(ga, notdef) and not np.array_equal(na, notdef)
    rows = np.flatnonzero(ga.any(axis=1))
    assert rows[-1] - rows[0] >= 30                # a 40 px Hangul syllable is a full-height glyph


def test_font_cmap_has_hangul_and_the_family_is_renamed():
    ttlib = pytest.importorskip("fontTools.ttLib")
    font = ttlib.TTFont(str(default_font_path()))
    cmap = font.getBestCmap()
    assert 0xAC00 in cmap and 0xD7A3 not in cmap   # 가 is kept; 힣 is not in KS X 1001
    kept = {cp for cp in subset_codepoints() if 0xAC00 <= cp <= 0xD7A3 or 0x20 <= cp < 0x7F}
    assert kept <= set(cmap)
    names = {r.nameID: r.toUnicode() for r in font["name"].names}
    assert names[1] == FAMILY and "Nanum" not in names[4] and "Nanum" not in names[6]


def test_subset_covers_the_ks_x_1001_hangul_and_ascii():
    cps = set(subset_codepoints())
    hangul = [cp for cp in cps if 0xAC00 <= cp <= 0xD7A3]
    assert len(hangul) == 2350
    assert set(range(0x20, 0x7F)) <= cps and {0x3131, 0x318E, 0x2665, 0x2605, 0x2026, 0xB7} <= cps


def test_load_font_is_cached_and_rejects_bad_input(tmp_path):
    assert load_font(24) is load_font(24)
    assert load_font(24, default_font_path()).size == 24
    with pytest.raises(ValueError, match="font size"):
        load_font(0)
    with pytest.raises(FileNotFoundError, match="nope.ttf"):
        load_font(20, tmp_path / "nope.ttf")
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(OSError, match="bad.ttf"):
        load_font(20, bad)
