"""Ad captions and hashtags from the industry templates, within Instagram's limits.

Deterministic: the same arguments give the same copy, and ``variant`` picks among an industry's templates
(modulo their number). Instagram accepts at most 30 hashtags and 2,200 characters per caption, hashtags
included; copy that would go over loses hashtags from the end first, then the end of the text.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from fitad.generate.industries import resolve_industry

__all__ = ["AdCopy", "make_copy", "normalize_hashtag", "MAX_HASHTAGS", "MAX_CAPTION_CHARS", "LANGS"]

MAX_HASHTAGS = 30
MAX_CAPTION_CHARS = 2200
LANGS = ("ko", "en")
_ELLIPSIS = "…"


@dataclasses.dataclass
class AdCopy:
    """A caption ready to post (hashtags line included) and the hashtags it carries."""

    caption: str
    hashtags: list[str]
    lang: str
    industry: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalize_hashtag(tag: str) -> str:
    """``'#' + tag`` with '#', spaces and anything but letters, digits and '_' removed; '' if none is left.

    Tags without a letter (``#2024``) are dropped too: Instagram does not link them.
    """
    body = re.sub(r"[^\w]", "", tag)
    return "#" + body if any(c.isalpha() for c in body) else ""


def _unique_hashtags(tags: Iterable[str]) -> list[str]:
    """Normalized, first occurrence kept, duplicates compared case-insensitively."""
    out: dict[str, str] = {}
    for tag in tags:
        norm = normalize_hashtag(tag)
        if norm and norm.casefold() not in out:
            out[norm.casefold()] = norm
    return list(out.values())


def _render(template: Sequence[str], values: dict[str, str]) -> str:
    """The template's lines, leaving out each line that uses a placeholder with no value."""
    lines = []
    for line in template:
        fields = {name for _, name, _, _ in string.Formatter().parse(line) if name}
        if all(values.get(f) for f in fields):
            lines.append(line.format_map(values))
    return "\n".join(lines)


def _join(body: str, hashtags: Sequence[str]) -> str:
    return body + ("\n\n" + " ".join(hashtags) if hashtags else "")


def _clip_text(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in '…' when cut (at a space when one is near the end)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - len(_ELLIPSIS)]
    space = cut.rfind(" ")
    if 0 < space >= len(cut) - 20:  # avoid cutting a word in half when it costs little
        cut = cut[:space]
    return cut.rstrip() + _ELLIPSIS


def make_copy(industry: str, *, lang: str = "ko", shop_name: str = "", headline: str = "", offer: str = "",
              variant: int = 0, max_hashtags: int = 30, extra_hashtags: Sequence[str] | str = ()) -> AdCopy:
    """Caption and hashtags for ``industry`` (id, Korean name or alias) in ``lang`` ('ko' or 'en').

    Hashtags: the shop name's, then ``extra_hashtags`` (a list of tags, or one string of tags separated by
    spaces, commas or '#'), then the industry's; at most ``min(max_hashtags, 30)``.
    """
    ind = resolve_industry(industry)
    if not isinstance(lang, str) or lang.strip().lower() not in LANGS:
        raise ValueError(f"lang {lang!r} is not supported; use one of: {', '.join(LANGS)}")
    lang = lang.strip().lower()
    if isinstance(variant, bool) or not isinstance(variant, int):
        raise ValueError(f"variant must be an integer, got {variant!r}")
    if isinstance(max_hashtags, bool) or not isinstance(max_hashtags, int) or max_hashtags < 0:
        raise ValueError(f"max_hashtags must be an integer >= 0, got {max_hashtags!r}")
    values = {}
    for field, value in (("shop_name", shop_name), ("headline", headline), ("offer", offer)):
        if not isinstance(value, str):
            raise ValueError(f"{field} must be a string, got {type(value).__name__}")
        values[field] = " ".join(value.split())  # one line each: templates place them on their own lines
    if isinstance(extra_hashtags, str):
        extra = [t for t in re.split(r"[\s,#]+", extra_hashtags) if t]
    else:
        extra = list(extra_hashtags)
        bad = [t for t in extra if not isinstance(t, str)]
        if bad:
            raise ValueError(f"extra_hashtags must hold strings, got {bad[0]!r}")

    templates = ind.copy_ko if lang == "ko" else ind.copy_en
    body = _render(templates[variant % len(templates)],
                   {"shop": values["shop_name"], "headline": values["headline"], "offer": values["offer"]})
    hashtags = _unique_hashtags([values["shop_name"], *extra,
                                 *(ind.hashtags_ko if lang == "ko" else ind.hashtags_en)])
    hashtags = hashtags[:min(max_hashtags, MAX_HASHTAGS)]
    while hashtags and len(_join(body, hashtags)) > MAX_CAPTION_CHARS:
        hashtags.pop()
    body = _clip_text(body, MAX_CAPTION_CHARS)
    return AdCopy(caption=_join(body, hashtags), hashtags=hashtags, lang=lang, industry=ind.id)
