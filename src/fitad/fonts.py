"""The bundled Korean font and a loader for it.

``assets/fonts/FitadGothic-Bold.ttf`` is a subset of NanumGothic Bold (NAVER Corporation, SIL Open
Font License 1.1, see ``assets/fonts/OFL.txt``). The OFL reserves the names "Nanum" and "NanumGothic"
for the original, so the modified (subset) font carries its own family name, "FitadGothic".

It covers printable ASCII, Latin-1 punctuation, general punctuation, CJK/full-width punctuation,
the 2,350 Hangul syllables of KS X 1001, Hangul compatibility Jamo and a few symbols (♥★☆♪…·→).
It is about 1.25 MB (TrueType hinting kept). Text outside that set renders as boxes: pass your own
TTF for other scripts.

How the asset was made (run from the repository root; fontTools is only needed for this)::

    (cd /tmp && apt-get download fonts-nanum && dpkg -x fonts-nanum_20200506-1_all.deb nanum)
    .venv/bin/python -m fitad.fonts rebuild /tmp/nanum/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf

which writes the code point list of :func:`subset_codepoints` to a file and runs::

    pyftsubset NanumGothicBold.ttf --unicodes-file=codepoints.txt --layout-features='*' \\
        --name-IDs=0 --name-languages=0x409 --no-name-legacy \\
        --output-file=src/fitad/assets/fonts/FitadGothic-Bold.ttf

then renames the family in the name table (IDs 1-6, 13, 14) with :func:`_rename_family`.
"""

from __future__ import annotations

import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from fitad.fsutil import atomic_write_bytes

FONT_DIR = Path(__file__).resolve().parent / "assets" / "fonts"
DEFAULT_FONT_FILE = "FitadGothic-Bold.ttf"
FAMILY = "FitadGothic"

# Symbols manga lettering and ad headlines use beyond ASCII.
_EXTRA_SYMBOLS = "♥♡★☆♪♫…·※○●◎◇◆□■△▲▽▼→←↑↓「」『』〈〉《》【】〜～！？"


def default_font_path() -> Path:
    """Path of the bundled Korean + Latin font (FitadGothic Bold)."""
    path = FONT_DIR / DEFAULT_FONT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"bundled font missing: {path} (reinstall fitad)")
    return path


@lru_cache(maxsize=64)
def _cached_font(size: int, path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def load_font(size: int, path: str | Path | None = None) -> ImageFont.FreeTypeFont:
    """A Pillow TrueType font of ``size`` pixels: ``path`` if given, else the bundled font.

    Fonts are cached per (size, path) since Pillow re-reads the file on every ``truetype`` call.
    """
    if int(size) < 1:
        raise ValueError(f"font size must be >= 1 px, got {size!r}")
    font_path = Path(path) if path is not None else default_font_path()
    if not font_path.is_file():
        raise FileNotFoundError(f"font file not found: {font_path}")
    try:
        return _cached_font(int(size), str(font_path))
    except OSError as exc:
        raise OSError(f"{font_path}: not a readable TrueType/OpenType font ({exc})") from None


# ---------------------------------------------------------------- rebuilding the asset

def subset_codepoints() -> list[int]:
    """Code points kept in the bundled subset, sorted."""
    cps = set(range(0x20, 0x7F))                       # printable ASCII
    cps |= set(range(0xA0, 0x100))                     # Latin-1 punctuation and letters
    cps |= set(range(0x2010, 0x2028))                  # dashes, quotes, bullets, ellipsis
    cps |= set(range(0x3000, 0x3019))                  # CJK punctuation and brackets
    cps |= set(range(0xFF01, 0xFF5F))                  # full-width ASCII
    cps |= set(range(0x3131, 0x318F))                  # Hangul compatibility Jamo
    for lead in range(0xB0, 0xC9):                     # KS X 1001 Hangul rows: 25 x 94 = 2,350
        for trail in range(0xA1, 0xFF):
            cps.add(ord(bytes([lead, trail]).decode("euc-kr")))
    cps |= {ord(c) for c in _EXTRA_SYMBOLS}
    return sorted(cps)


def _rename_family(font_path: Path, family: str = FAMILY, style: str = "Bold") -> None:
    """Give a modified font its own name, as the OFL requires when the original has Reserved Names."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path), recalcTimestamp=False)   # keeps rebuilds byte-identical
    name = font["name"]
    name.names = [r for r in name.names if r.nameID == 0]   # keep only the copyright notice
    ps_name = f"{family}-{style}"
    for name_id, text in {
        1: family, 2: style, 3: f"1.000;FITAD;{ps_name}", 4: f"{family} {style}",
        5: "Version 1.000; subset of NanumGothic Bold 3.021 (NAVER Corporation)", 6: ps_name,
        13: "This Font Software is licensed under the SIL Open Font License, Version 1.1.",
        14: "https://openfontlicense.org",
    }.items():
        name.setName(text, name_id, 3, 1, 0x409)
    font.save(str(font_path))


def rebuild(source_ttf: Path, out_path: Path | None = None) -> Path:
    """Re-make the bundled subset from the original NanumGothic Bold TTF (needs fontTools)."""
    from fontTools import subset

    out_path = out_path or FONT_DIR / DEFAULT_FONT_FILE
    with tempfile.TemporaryDirectory() as tmp:
        cp_file = Path(tmp) / "codepoints.txt"
        cp_file.write_text("\n".join(f"U+{cp:04X}" for cp in subset_codepoints()) + "\n")
        tmp_out = Path(tmp) / out_path.name
        subset.main([str(source_ttf), f"--unicodes-file={cp_file}", "--layout-features=*",
                     "--name-IDs=0", "--name-languages=0x409", "--no-name-legacy",
                     f"--output-file={tmp_out}"])
        _rename_family(tmp_out)
        atomic_write_bytes(out_path, tmp_out.read_bytes())
    return out_path


if __name__ == "__main__":  # python -m fitad.fonts rebuild NanumGothicBold.ttf
    if len(sys.argv) != 3 or sys.argv[1] != "rebuild":
        sys.exit("usage: python -m fitad.fonts rebuild PATH/TO/NanumGothicBold.ttf")
    print(rebuild(Path(sys.argv[2])))
