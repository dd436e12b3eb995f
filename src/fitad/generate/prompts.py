"""Image prompts from a shop owner's request: Korean glossary, industry templates, a token budget.

CLIP reads at most 77 tokens (start/end included) and cannot read Hangul, so a request is translated word
by word with :data:`~fitad.generate.industries.GLOSSARY`; words it does not know are reported in the plan,
never silently lost. The prompt is built from prioritized parts and the lowest-priority phrases are dropped
until it fits the text encoder's window; the plan lists every phrase that was dropped.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

from fitad.generate.industries import (
    GLOSSARY,
    INDUSTRIES,
    KOREAN_ENDINGS,
    STYLE_PRESETS,
    Industry,
    PromptError,
    resolve_industry,
)

__all__ = ["PromptPlan", "PromptError", "build_prompt", "fit_to_budget", "estimate_tokens", "translate_request",
           "resolve_industry", "INDUSTRIES", "STYLE_PRESETS", "MODES", "PROTECTED_PRIORITY"]

# Parts at or above this priority are never dropped by fit_to_budget (trigger/class word, the request).
PROTECTED_PRIORITY = 90

# Priorities: higher is kept longer.
P_SUBJECT, P_REQUEST, P_MODE, P_INDUSTRY, P_STYLE, P_LIGHTING, P_QUALITY = 100, 90, 50, 40, 30, 20, 10
N_EXTRA, N_MODE, N_INDUSTRY, N_GENERIC = 90, 60, 50, 10

MODES: dict[str, tuple[str, str]] = {  # mode -> (prompt phrases, negative phrases)
    "txt2img": ("", ""),
    "img2img": ("", ""),
    "inpaint": ("seamless blend with the surroundings", "visible seams, mismatched lighting"),
    "product": ("product photography, studio background, sharp focus on the product",
                "distorted label, warped packaging, floating product"),
    "person": ("portrait, natural skin texture, friendly expression",
               "deformed face, extra fingers, bad hands, extra limbs"),
}

QUALITY = "high quality, professional advertising photo, detailed, sharp focus"
NEGATIVE = ("lowres, blurry, worst quality, low quality, jpeg artifacts, watermark, text, logo, signature, "
            "cropped, out of frame, deformed")

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_RUNS = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+|[^\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+")
_PHRASE_SEP = re.compile(r"[,;\n\r\t·|/]+")
_EDGE_PUNCT = " .!?\"'()[]{}<>~*:`“”‘’…"
_GLOSSARY_MAXLEN = max(map(len, GLOSSARY))

Part = tuple[str, str, int]  # (name, text, priority)


@dataclasses.dataclass
class PromptPlan:
    """What :func:`build_prompt` made and why: the prompt, what was left out, the token count."""

    prompt: str
    negative_prompt: str
    parts: list[Part]
    dropped: list[str]
    dropped_negative: list[str]
    unknown_words: list[str]
    translated: dict[str, str]
    token_count: int
    negative_token_count: int
    budget: int
    industry: str | None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["parts"] = [{"name": n, "text": t, "priority": p} for n, t, p in self.parts]
        return d


# ---------------------------------------------------------------- tokens

def estimate_tokens(text: str) -> int:
    """A conservative CLIP/T5 token count when no tokenizer is at hand (start and end tokens included).

    Real vocabularies hold common English words whole; counting long words as several tokens, every
    digit and punctuation mark as one and non-ASCII characters as two errs on the high side.
    """
    n = 2
    for piece in re.findall(r"[A-Za-z]+|\d|[^\sA-Za-z\d]", text):
        if piece[0].isascii() and piece[0].isalpha():
            n += 1 + len(piece) // 6
        else:
            n += 1 if piece.isascii() else 2
    return n


def _phrases(text: str) -> list[str]:
    return [p for p in (" ".join(s.split()) for s in text.split(",")) if p]


def _render(kept: Sequence[Sequence[str]]) -> str:
    return ", ".join(p for part in kept for p in part)


def fit_to_budget(parts: Sequence[Part], count_tokens: Callable[[str], int], budget: int) -> tuple[str, list[str]]:
    """Join ``parts`` (``(name, text, priority)``, in prompt order) with ", " and drop phrases until it fits.

    Phrases are the comma-separated pieces of a part's text. Parts are trimmed lowest priority first (the
    later part first on equal priority), each from its last phrase backwards, stopping as soon as
    ``count_tokens(text) <= budget``. Parts with priority >= :data:`PROTECTED_PRIORITY` are never touched,
    so the text returned can still be over budget: callers check. Returns the text and the dropped phrases
    in the order they were removed.
    """
    kept = [_phrases(text) for _, text, _ in parts]
    text = _render(kept)
    dropped: list[str] = []
    if count_tokens(text) <= budget:
        return text, dropped
    order = sorted((i for i, (_, _, prio) in enumerate(parts) if prio < PROTECTED_PRIORITY),
                   key=lambda i: (parts[i][2], -i))
    for i in order:
        while kept[i]:
            dropped.append(kept[i].pop())
            text = _render(kept)
            if count_tokens(text) <= budget:
                return text, dropped
    return text, dropped


def _truncate_part(parts: Sequence[Part], name: str, count_tokens: Callable[[str], int],
                   budget: int) -> tuple[str, list[str]] | None:
    """Keep only protected parts and cut part ``name`` by trailing words until the text fits.

    Returns (text, removed pieces in removal order: the tail of each cut phrase, last phrase first), or
    None when the text does not fit even with that part empty.
    """
    protected = [(n, t, p) for n, t, p in parts if p >= PROTECTED_PRIORITY]
    target = next((k for k, (n, _, _) in enumerate(protected) if n == name), None)
    words = [(j, w) for j, phrase in enumerate(_phrases(protected[target][1])) for w in phrase.split()] \
        if target is not None else []

    def text_with(k: int) -> str:  # the protected text with the first k words of the part kept
        phrases: dict[int, list[str]] = {}
        for j, w in words[:k]:
            phrases.setdefault(j, []).append(w)
        kept = [_phrases(t) for _, t, _ in protected]
        if target is not None:
            kept[target] = [" ".join(ws) for _, ws in sorted(phrases.items())]
        return _render(kept)

    if count_tokens(text_with(0)) > budget:
        return None
    lo, hi = 0, len(words)  # binary search for the most words that fit; lo always fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text_with(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    removed: dict[int, list[str]] = {}
    for j, w in words[lo:]:
        removed.setdefault(j, []).append(w)
    return text_with(lo), [" ".join(ws) for _, ws in sorted(removed.items(), reverse=True)]


# ---------------------------------------------------------------- Korean

def _segment(word: str) -> tuple[list[str], list[str]]:
    """Longest-match glossary pieces of a Hangul word: (English pieces, unknown spans)."""
    english: list[str] = []
    unknown: list[str] = []
    span = ""
    i = 0
    while i < len(word):
        for length in range(min(_GLOSSARY_MAXLEN, len(word) - i), 0, -1):
            if word[i:i + length] in GLOSSARY:
                if span:
                    unknown.append(span)
                    span = ""
                english.append(GLOSSARY[word[i:i + length]])
                i += length
                break
        else:
            span += word[i]
            i += 1
    if span:
        unknown.append(span)
    return english, unknown


def _stems(word: str) -> list[str]:
    """The word, then the word with one and with two particles/endings removed (longest endings first)."""
    out = [word]
    for _ in range(2):
        for w in list(out):
            for ending in KOREAN_ENDINGS:
                if w.endswith(ending) and len(w) > len(ending) and w[:-len(ending)] not in out:
                    out.append(w[:-len(ending)])
    return out


def _translate_word(word: str) -> tuple[list[str], list[str]]:
    """English pieces and unknown spans of one Hangul word; the reading with the fewest unknown letters wins
    (ties: the least stripped), so 고양이 stays a cat while 케이크를 loses its particle."""
    best: tuple[list[str], list[str]] | None = None
    for stem in _stems(word):
        english, unknown = _segment(stem)
        if not unknown:
            return english, unknown
        if best is None or sum(map(len, unknown)) < sum(map(len, best[1])):
            best = english, unknown
    assert best is not None
    return best


def translate_request(request: str) -> tuple[str, dict[str, str], list[str]]:
    """The request in English for the text encoder: (text, {Korean word: English}, unknown words).

    Commas (and ; / · newlines) separate phrases and are kept as ", "; ASCII words pass through; Hangul
    goes through the glossary; anything else (other scripts, emoji) is reported as unknown.
    """
    translated: dict[str, str] = {}
    unknown: list[str] = []
    phrases: list[str] = []
    for raw_phrase in _PHRASE_SEP.split(request):
        words: list[str] = []
        for raw_word in raw_phrase.split():
            for run in _RUNS.findall(raw_word):
                run = run.strip(_EDGE_PUNCT)
                if not run:
                    continue
                if _HANGUL.search(run):
                    english, missing = _translate_word(run)
                    if english:
                        translated[run] = " ".join(english)
                        words.extend(english)
                    unknown.extend(missing)
                elif run.isascii():
                    if any(c.isalnum() for c in run):
                        words.append(run)
                else:
                    unknown.append(run)
        if words:
            phrases.append(" ".join(words))
    return ", ".join(phrases), translated, list(dict.fromkeys(unknown))


# ---------------------------------------------------------------- building

def _dedupe(parts: list[Part]) -> list[Part]:
    """Remove a phrase repeated in a lower-priority part (the higher-priority copy stays); drop empty parts."""
    seen: set[str] = set()
    keep: dict[int, list[str]] = {}
    for i in sorted(range(len(parts)), key=lambda i: (-parts[i][2], i)):
        keep[i] = []
        for phrase in _phrases(parts[i][1]):
            if phrase.casefold() not in seen:
                seen.add(phrase.casefold())
                keep[i].append(phrase)
    return [(n, ", ".join(keep[i]), p) for i, (n, _, p) in enumerate(parts) if keep[i]]


def _fit(parts: list[Part], count: Callable[[str], int], budget: int, truncatable: str,
         what: str) -> tuple[str, list[str], list[str]]:
    """fit_to_budget, then cutting the ``truncatable`` part by words if the protected parts alone are too long."""
    text, dropped = fit_to_budget(parts, count, budget)
    warnings: list[str] = []
    if count(text) <= budget:
        return text, dropped, warnings
    cut = _truncate_part(parts, truncatable, count, budget)
    if cut is None:
        protected = ", ".join(t for n, t, p in parts if p >= PROTECTED_PRIORITY and n != truncatable)
        raise PromptError(f"{what}: {protected!r} alone needs more than max_tokens={budget} tokens; "
                          "use a shorter trigger/class word or a larger max_tokens")
    text, removed = cut
    warnings.append(f"{what}: the {truncatable} was cut to fit {budget} tokens; removed: {'; '.join(removed)}")
    return text, dropped + removed, warnings


def build_prompt(request: str, *, industry: str | None = None, trigger: str | None = None, class_word: str = "",
                 style: str | None = None, mode: str = "txt2img", count_tokens: Callable[[str], int] | None = None,
                 max_tokens: int = 77, extra_negative: str = "") -> PromptPlan:
    """Prompt and negative prompt for a request (Korean or English) that fit ``max_tokens``.

    Parts, highest priority first: ``trigger class_word`` (never dropped), the translated request (cut by
    words only if nothing else is left to drop), the mode's wording, the industry's subject, the ``style``
    preset (a key of :data:`STYLE_PRESETS`), the industry's lighting, generic quality tags.
    ``count_tokens(text)`` must count the tokenizer's start/end tokens too, e.g.
    ``lambda t: len(tokenizer(t).input_ids)``; without it a conservative estimate is used.
    """
    if not isinstance(request, str):
        raise PromptError(f"request must be a string, got {type(request).__name__}")
    if mode not in MODES:
        raise PromptError(f"mode {mode!r} is not known; valid modes: {', '.join(MODES)}")
    if style is not None and style not in STYLE_PRESETS:
        raise PromptError(f"style {style!r} is not known; valid styles: {', '.join(STYLE_PRESETS)}")
    trigger = (trigger or "").strip()
    if any(c.isspace() or c == "," for c in trigger):
        raise PromptError(f"trigger {trigger!r} must be one word without commas, e.g. 'sks'")
    if "," in class_word:
        raise PromptError(f"class_word {class_word!r} must not contain commas")
    count = count_tokens or estimate_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= count(""):
        raise PromptError(f"max_tokens must be an integer above the tokenizer's {count('')} start/end tokens, "
                          f"got {max_tokens!r}")
    ind: Industry | None = resolve_industry(industry) if industry else None

    english, translated, unknown = translate_request(request)
    head = " ".join(w for w in (trigger, " ".join(class_word.split())) if w)
    mode_pos, mode_neg = MODES[mode]
    parts = _dedupe([
        # Without a trigger the class word is just the most important droppable phrase.
        ("subject", head, P_SUBJECT if trigger else P_REQUEST - 1),
        ("request", english, P_REQUEST),
        ("mode", mode_pos, P_MODE),
        ("industry", ", ".join(ind.subject) if ind else "", P_INDUSTRY),
        ("style", STYLE_PRESETS[style] if style else "", P_STYLE),
        ("lighting", ", ".join(ind.lighting) if ind else "", P_LIGHTING),
        ("quality", QUALITY, P_QUALITY),
    ])
    negative_parts = _dedupe([
        ("extra", extra_negative, N_EXTRA),
        ("mode", mode_neg, N_MODE),
        ("industry", ind.negative if ind else "", N_INDUSTRY),
        ("generic", NEGATIVE, N_GENERIC),
    ])
    prompt, dropped, warnings = _fit(parts, count, max_tokens, "request", "prompt")
    negative, dropped_negative, neg_warnings = _fit(negative_parts, count, max_tokens, "extra", "negative prompt")
    if unknown:
        warnings.insert(0, f"not in the glossary, left out of the prompt: {', '.join(unknown)}")
    return PromptPlan(
        prompt=prompt, negative_prompt=negative, parts=parts, dropped=dropped, dropped_negative=dropped_negative,
        unknown_words=unknown, translated=translated, token_count=count(prompt),
        negative_token_count=count(negative), budget=max_tokens, industry=ind.id if ind else None,
        warnings=warnings + neg_warnings,
    )

