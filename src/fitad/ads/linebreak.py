"""Line breaking for ad headlines: grapheme clusters, Korean word boundaries, punctuation rules.

Text is NFC-normalised and broken at spaces first (Korean eojeol). A word wider than the line is broken
between grapheme clusters (UAX #29 rules for Hangul Jamo, combining marks, ZWJ and flag sequences), so a
syllable block is never split. Closing punctuation never starts a line; opening brackets never end one.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from PIL import ImageFont

# Characters that must not start a line (closing punctuation, Korean/CJK and Latin forms) and that
# must not end one (opening brackets).
NO_LINE_START = frozenset(",.!?…‥:;)]}%、。，．！？：；）〕」』】〉》’”·")
NO_LINE_END = frozenset("([{‘“「『【〈《〔（")


# ---------------------------------------------------------------------------- graphemes

def _break_class(ch: str) -> str:
    cp = ord(ch)
    if ch == "\r":
        return "CR"
    if ch == "\n":
        return "LF"
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return "L"
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return "V"
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return "T"
    if 0xAC00 <= cp <= 0xD7A3:
        return "LV" if (cp - 0xAC00) % 28 == 0 else "LVT"
    if cp == 0x200D:
        return "ZWJ"
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return "RI"
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me") or cp == 0x200C or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
        return "Extend"
    if cat == "Mc":
        return "SpacingMark"
    if cat in ("Cc", "Zl", "Zp", "Cf"):
        return "Control"
    return "Other"


def _pictographic(ch: str) -> bool:
    return ord(ch) >= 0x1F000 or unicodedata.category(ch) == "So"


def graphemes(text: str) -> list[str]:
    """Split ``text`` into extended grapheme clusters (the UAX #29 rules that matter for ad copy:
    CR LF, Hangul L/V/T/LV/LVT sequences, combining and spacing marks, ZWJ sequences, flag pairs)."""
    clusters: list[str] = []
    cur = ""
    prev = None
    ri_run = 0
    for ch in text:
        cls = _break_class(ch)
        if cur:
            if prev == "CR" and cls == "LF":
                join = True
            elif prev in ("Control", "CR", "LF") or cls in ("Control", "CR", "LF"):
                join = False
            elif prev == "L" and cls in ("L", "V", "LV", "LVT"):
                join = True
            elif prev in ("LV", "V") and cls in ("V", "T"):
                join = True
            elif prev in ("LVT", "T") and cls == "T":
                join = True
            elif cls in ("Extend", "ZWJ", "SpacingMark"):
                join = True
            elif prev == "ZWJ" and _pictographic(ch):
                join = True
            elif prev == "RI" and cls == "RI" and ri_run % 2 == 1:
                join = True
            else:
                join = False
            if not join:
                clusters.append(cur)
                cur = ""
        cur += ch
        ri_run = ri_run + 1 if cls == "RI" else 0
        prev = cls
    if cur:
        clusters.append(cur)
    return clusters


# ---------------------------------------------------------------------------- line breaking

@lru_cache(maxsize=16384)
def text_width(font: ImageFont.FreeTypeFont, text: str) -> float:
    return font.getlength(text) if text else 0.0


def _units(paragraph: str) -> list[str]:
    """Words of a paragraph; a word that starts with closing punctuation is glued to the one before."""
    units: list[str] = []
    for word in paragraph.split():
        if units and (word[0] in NO_LINE_START or all(c in NO_LINE_END for c in units[-1])):
            units[-1] += " " + word
        else:
            units.append(word)
    return units


def _starts_forbidden(gs: list[str], k: int) -> bool:
    while k < len(gs) and gs[k].isspace():
        k += 1
    return k < len(gs) and gs[k][0] in NO_LINE_START


def _break_word(word: str, font, max_width: float) -> list[str] | None:
    """Break a too-wide word between grapheme clusters; None when a legal break is impossible."""
    gs = graphemes(word)
    widths = [text_width(font, g) for g in gs]
    lines: list[str] = []
    i, n = 0, len(gs)
    while i < n:
        while i < n and gs[i].isspace():
            i += 1
        if i >= n:
            break
        j, acc = i, 0.0
        while j < n and acc + widths[j] <= max_width:
            acc += widths[j]
            j += 1
        while j > i and text_width(font, "".join(gs[i:j]).rstrip()) > max_width:
            j -= 1          # kerning made the real run wider than the sum of its parts
        if j == i:
            return None     # one grapheme is wider than the box
        if j < n:
            k = j
            while k > i and (_starts_forbidden(gs, k) or gs[k - 1] in NO_LINE_END):
                k -= 1
            if k == i:
                return None
            j = k
        lines.append("".join(gs[i:j]).rstrip())
        i = j
    return lines


def normalize_text(text: str) -> str:
    """NFC, with CR LF / CR turned into LF."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: float, *,
              max_lines: int | None = None) -> list[str] | None:
    """Break ``text`` into lines no wider than ``max_width`` pixels in ``font``.

    Breaks at spaces first, between grapheme clusters only inside a word wider than the box; keeps
    explicit newlines (an empty paragraph is an empty line); closing punctuation never starts a line.
    Returns None when the text cannot be broken that way or needs more than ``max_lines`` lines.
    """
    lines: list[str] = []
    for paragraph in normalize_text(text).split("\n"):
        units = _units(paragraph)
        if not units:
            lines.append("")
            continue
        cur = ""
        for unit in units:
            cand = f"{cur} {unit}" if cur else unit
            if text_width(font, cand) <= max_width:
                cur = cand
                continue
            if cur:
                lines.append(cur)
                cur = ""
            if text_width(font, unit) <= max_width:
                cur = unit
            else:
                pieces = _break_word(unit, font, max_width)
                if pieces is None:
                    return None
                lines.extend(pieces[:-1])
                cur = pieces[-1]
            if max_lines is not None and len(lines) > max_lines:
                return None
        lines.append(cur)
        if max_lines is not None and len(lines) > max_lines:
            return None
    return lines
