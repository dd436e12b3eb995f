"""Fonts for the styled panels: system fonts found by file name and grouped by lettering style.

Fonts are looked up by a fixed list of file names under :data:`SEARCH_ROOTS` (no ``fc-list``), so
importing is cheap and the choice depends only on which files exist. The holdout split adds fonts
the dev split never sees, so a stage tuned on dev panels is measured on lettering it has not met.
When a style has no font on this machine the bundled FitadGothic stands in for it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import fitad

SEARCH_ROOTS: tuple[Path, ...] = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
BUNDLED_FONT = Path(fitad.__file__).resolve().parent / "assets" / "fonts" / "FitadGothic-Bold.ttf"
BUNDLED_STYLE = "bundled"
SPLITS = ("dev", "holdout")

# Style group -> candidate file names, in preference order (both splits).
STYLE_FONTS: dict[str, tuple[str, ...]] = {
    "serif": ("NanumMyeongjo.ttf", "NanumMyeongjoBold.ttf", "NanumMyeongjoExtraBold.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
              "DejaVuSerif-BoldItalic.ttf", "LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf",
              "LiberationSerif-Italic.ttf", "LiberationSerif-BoldItalic.ttf"),
    "brush": ("NanumBrush.ttf",),
    "handwritten": ("ComicNeue-Regular.otf", "ComicNeue-Bold.otf", "ComicNeue-Italic.otf",
                    "ComicNeue-BoldItalic.otf", "NanumBarunpenR.ttf", "NanumBarunpenB.ttf"),
    "gothic": ("NanumGothic.ttf", "NanumGothicBold.ttf", "NanumGothicExtraBold.ttf",
               "NanumBarunGothic.ttf", "NanumBarunGothicBold.ttf"),
}
# Added to their style group in the holdout split only.
HOLDOUT_ONLY_FONTS: dict[str, tuple[str, ...]] = {
    "handwritten": ("NanumPen.ttf",),
    "gothic": ("NanumSquareR.ttf", "NanumSquareB.ttf", "NanumSquareEB.ttf",
               "NanumSquareRoundR.ttf", "NanumSquareRoundB.ttf", "NanumSquareRoundEB.ttf",
               "NanumSquare_acR.ttf", "NanumSquare_acB.ttf"),
}
_HOLDOUT_ONLY_PREFIXES = ("NanumPen", "NanumSquare")  # NanumSquareRound and NanumSquare_ac too

_PROBE_SIZE = 40
_MISSING_CHAR = "\U0010FFFD"  # a private-use code point no font maps: renders as the notdef glyph


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def is_holdout_only(font: str | os.PathLike) -> bool:
    """Whether a font file (path or name) is reserved for the holdout split."""
    return Path(font).name.startswith(_HOLDOUT_ONLY_PREFIXES)


@lru_cache(maxsize=8)
def _font_index(roots: tuple[str, ...]) -> dict[str, str]:
    """File name -> first path under ``roots`` (walked in sorted order, so the choice is stable)."""
    found: dict[str, str] = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                found.setdefault(name, os.path.join(dirpath, name))
    return found


def available_fonts(split: str = "dev") -> dict[str, list[str]]:
    """Style group -> paths of the fonts found for ``split`` (``bundled`` is always present)."""
    check_split(split)
    index = _font_index(tuple(str(root) for root in SEARCH_ROOTS))
    groups: dict[str, list[str]] = {}
    for style, names in STYLE_FONTS.items():
        if split == "holdout":
            names = names + HOLDOUT_ONLY_FONTS.get(style, ())
        groups[style] = [index[name] for name in names if name in index]
    groups[BUNDLED_STYLE] = [str(BUNDLED_FONT)]
    return groups


@lru_cache(maxsize=512)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A Pillow font, cached: Pillow re-reads the file on every ``truetype`` call."""
    return ImageFont.truetype(path, int(size))


@lru_cache(maxsize=256)
def _cap_height(path: str) -> float:
    """Ink height of "H" as a fraction of the font size (about 0.72 for most; brush/pen faces run small)."""
    box = load_font(path, 100).getmask("H").getbbox()
    return (box[3] - box[1]) / 100.0 if box else 0.72


def matched_size(path: str, size: int) -> int:
    """The size at which ``path`` letters look about as big as a typical font at ``size``."""
    return int(round(size * min(1.8, max(0.9, 0.72 / _cap_height(path)))))


def _probe(path: str, text: str) -> bytes:
    font = load_font(path, _PROBE_SIZE)
    image = Image.new("L", (_PROBE_SIZE * 3, _PROBE_SIZE * 2), 0)
    ImageDraw.Draw(image).text((_PROBE_SIZE // 2, _PROBE_SIZE // 4), text, font=font, fill=255)
    return image.tobytes()


@lru_cache(maxsize=8)
def _notdef_ink(path: str) -> bytes:
    return _probe(path, _MISSING_CHAR)


@lru_cache(maxsize=65536)
def has_glyph(path: str, char: str) -> bool:
    """True when ``char`` draws as its own glyph: some ink, and not the font's tofu/notdef box."""
    if char.isspace():
        return True
    ink = _probe(path, char)
    if not np.frombuffer(ink, dtype=np.uint8).any():
        return False
    return ink != _notdef_ink(path)


def supports(path: str, text: str) -> bool:
    return all(has_glyph(path, char) for char in set(text))


def pick_font(rng: np.random.Generator, split: str, text: str,
              styles: tuple[str, ...] = ("serif", "brush", "handwritten", "gothic")) -> str:
    """A font path that draws every glyph of ``text``, in one of ``styles`` where possible.

    In the holdout split a holdout-only font is taken half the time it can draw the text, so those
    fonts really appear there. A style with no usable font falls back to the bundled font.
    """
    groups = available_fonts(split)
    if split == "holdout" and rng.random() < 0.5:
        reserved = [p for names in groups.values() for p in names if is_holdout_only(p)]
        usable = [p for p in reserved if supports(p, text)]
        if usable:
            return usable[int(rng.integers(len(usable)))]
    style = styles[int(rng.integers(len(styles)))]
    usable = [p for p in groups.get(style, []) if supports(p, text)]
    if usable:
        return usable[int(rng.integers(len(usable)))]
    if supports(str(BUNDLED_FONT), text):
        return str(BUNDLED_FONT)
    anywhere = [p for names in groups.values() for p in names if supports(p, text)]
    if not anywhere:
        raise LookupError(f"no available font draws {text!r}")
    return anywhere[0]
