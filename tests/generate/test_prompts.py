"""Prompt building: glossary translation, industries, and the token budget measured with real tokenizers."""

from __future__ import annotations

import re

import pytest

from fitad.generate.industries import GLOSSARY, INDUSTRIES, STYLE_PRESETS
from fitad.generate.prompts import (
    PromptError,
    build_prompt,
    estimate_tokens,
    fit_to_budget,
    resolve_industry,
)

HANGUL = re.compile(r"[\uac00-\ud7a3\u3130-\u318f]")

# The industries and names the product promises (typed from the spec, not read from the module).
SPEC_INDUSTRIES = {
    "cafe": ["카페"],
    "restaurant": ["식당", "음식점", "레스토랑"],
    "bakery": ["베이커리", "빵집"],
    "beauty_salon": ["미용실", "헤어샵"],
    "nail_shop": ["네일샵"],
    "fitness": ["헬스", "피트니스", "헬스장", "필라테스"],
    "fashion": ["의류", "옷가게", "패션"],
    "flower_shop": ["꽃집", "플라워샵"],
    "academy": ["학원", "교습소"],
    "pet_shop": ["펫샵", "애견샵", "반려동물"],
    "real_estate": ["부동산", "공인중개사"],
    "clinic": ["병원", "의원", "클리닉", "치과", "한의원"],
}

LONG_REQUEST = "딸기라떼 신메뉴 출시, 따뜻한 카페 사진, 봄 한정 이벤트 할인"


@pytest.fixture(scope="module")
def clip_count():
    from fitad.zoo import tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    return lambda text: len(tok(text).input_ids)


@pytest.fixture(scope="module")
def t5_count():
    from fitad.zoo import tiny_t5_tokenizer

    tok = tiny_t5_tokenizer()
    return lambda text: len(tok(text).input_ids)


def phrases(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


# ---------------------------------------------------------------- industries

@pytest.mark.parametrize("industry_id", sorted(SPEC_INDUSTRIES))
def test_industries_resolve_by_id_korean_name_and_alias(industry_id):
    assert resolve_industry(industry_id).id == industry_id
    assert resolve_industry(f"  {industry_id.upper().replace('_', ' ')} ").id == industry_id
    for name in SPEC_INDUSTRIES[industry_id]:
        assert resolve_industry(name).id == industry_id, name
        assert resolve_industry(f" {name} ").id == industry_id, name
    ind = INDUSTRIES[industry_id]
    for field in ("subject", "lighting", "copy_ko", "copy_en", "hashtags_ko", "hashtags_en"):
        assert len(getattr(ind, field)) >= 2, (industry_id, field)
    assert ind.negative


def test_unknown_industry_error_names_value_and_lists_ids():
    with pytest.raises(PromptError) as err:
        resolve_industry("우주선가게")
    assert isinstance(err.value, ValueError)
    assert "우주선가게" in str(err.value)
    for industry_id in SPEC_INDUSTRIES:
        assert industry_id in str(err.value)
    with pytest.raises(PromptError, match="spaceship"):
        build_prompt("커피", industry="spaceship")


# ---------------------------------------------------------------- Korean

def test_compounds_translate_by_longest_match():
    plan = build_prompt("딸기라떼 아이스아메리카노 봄신상")
    assert plan.translated["딸기라떼"] == f"{GLOSSARY['딸기']} {GLOSSARY['라떼']}"
    assert plan.translated["아이스아메리카노"] == f"{GLOSSARY['아이스']} {GLOSSARY['아메리카노']}"
    assert plan.translated["봄신상"] == f"{GLOSSARY['봄']} {GLOSSARY['신상']}"
    assert plan.unknown_words == []
    assert "strawberry latte" in plan.prompt


def test_particles_are_stripped_but_words_ending_like_particles_are_kept():
    plan = build_prompt("고양이는 케이크를 카페에서 고양이")
    assert plan.translated == {"고양이는": GLOSSARY["고양이"], "케이크를": GLOSSARY["케이크"],
                               "카페에서": GLOSSARY["카페"], "고양이": GLOSSARY["고양이"]}
    assert plan.unknown_words == []


def test_unknown_korean_words_are_reported_not_put_in_the_prompt():
    plan = build_prompt("딸기라떼 퓨퓨퓨 신메뉴 뀨뀨를", industry="cafe")
    assert plan.unknown_words == ["퓨퓨퓨", "뀨뀨"]
    assert set(plan.translated) == {"딸기라떼", "신메뉴"}
    assert not HANGUL.search(plan.prompt) and not HANGUL.search(plan.negative_prompt)
    assert any("퓨퓨퓨" in w for w in plan.warnings)
    assert "new menu" in plan.prompt


def test_english_and_numbers_pass_through():
    plan = build_prompt("50%할인 latte art 이벤트")
    assert plan.translated == {"할인": GLOSSARY["할인"], "이벤트": GLOSSARY["이벤트"]}
    assert phrases(plan.prompt)[0] == f"50% {GLOSSARY['할인']} latte art {GLOSSARY['이벤트']}"


# ---------------------------------------------------------------- token budget

@pytest.mark.parametrize("industry,style,mode", [
    ("cafe", "instagram_story", "txt2img"),
    ("헤어샵", "kakao_banner", "person"),
    ("clinic", "instagram_square", "product"),
    ("부동산", "facebook_link", "inpaint"),
])
def test_prompt_fits_clip_and_drops_exactly_the_missing_phrases(clip_count, industry, style, mode):
    kwargs = dict(industry=industry, trigger="sks", class_word="shop", style=style, mode=mode,
                  count_tokens=clip_count, extra_negative="people, crowd")
    plan = build_prompt(LONG_REQUEST, max_tokens=77, **kwargs)
    full = build_prompt(LONG_REQUEST, max_tokens=10**6, **kwargs)
    assert full.dropped == [] and full.dropped_negative == []

    for text, count, dropped, ref in ((plan.prompt, plan.token_count, plan.dropped, full.prompt),
                                      (plan.negative_prompt, plan.negative_token_count, plan.dropped_negative,
                                       full.negative_prompt)):
        assert clip_count(text) == count <= 77
        kept, reference = phrases(text), phrases(ref)
        missing = [p for p in reference if p not in kept]
        assert dropped and sorted(dropped) == sorted(missing)
        assert kept == [p for p in reference if p in kept]  # order unchanged
        # Dropping stopped as soon as it fitted: with the last dropped phrase back it would not.
        restored = [p for p in reference if p in kept or p == dropped[-1]]
        assert clip_count(", ".join(restored)) > 77

    assert plan.prompt.startswith("sks shop, ")
    assert plan.budget == 77
    # Lowest priority goes first, and nothing kept ranks below anything dropped.
    priority = {p: prio for _, text, prio in plan.parts for p in phrases(text)}
    dropped_prios = [priority[p] for p in plan.dropped]
    assert dropped_prios == sorted(dropped_prios)
    assert max(dropped_prios) <= min(priority[p] for p in phrases(plan.prompt))


def test_trigger_survives_and_request_is_cut_by_words_when_nothing_else_is_left(clip_count):
    request = "strawberry latte with cream, chocolate cake on a marble table, spring flowers"
    plan = build_prompt(request, industry="cafe", trigger="sks", class_word="cup", count_tokens=clip_count,
                        max_tokens=16)
    assert clip_count(plan.prompt) == plan.token_count <= 16
    assert plan.prompt.startswith("sks cup")
    assert any("cut" in w for w in plan.warnings)
    # The request words kept plus those reported as removed (listed from the end) give the whole request.
    kept_words = plan.prompt[len("sks cup"):].replace(",", " ").split()
    all_words = request.replace(",", " ").split()
    n_removed = len(all_words) - len(kept_words)
    assert 0 < n_removed < len(all_words)
    removed_words = " ".join(reversed(plan.dropped)).split()[:n_removed]
    assert kept_words + removed_words == all_words


def test_trigger_too_long_for_the_budget_is_an_error(clip_count):
    with pytest.raises(PromptError, match="max_tokens=8"):
        build_prompt("커피", trigger="sks", class_word="extraordinarily elaborate ceramic cup",
                     count_tokens=clip_count, max_tokens=8)


def test_t5_budget_of_512(t5_count):
    request = ", ".join(["strawberry latte with whipped cream on a marble table"] * 40)
    plan = build_prompt(request, industry="bakery", trigger="sks", class_word="bread", count_tokens=t5_count,
                        max_tokens=512, extra_negative=", ".join(["blurry crumbs"] * 200))
    assert t5_count(plan.prompt) == plan.token_count <= 512
    assert t5_count(plan.negative_prompt) == plan.negative_token_count <= 512
    assert plan.prompt.startswith("sks bread")

    short = build_prompt(LONG_REQUEST, industry="bakery", style="instagram_portrait", count_tokens=t5_count,
                         max_tokens=512)
    assert short.dropped == [] and short.dropped_negative == []
    assert STYLE_PRESETS["instagram_portrait"] in short.prompt
    for phrase in INDUSTRIES["bakery"].subject + INDUSTRIES["bakery"].lighting:
        assert phrase in short.prompt


def test_estimate_without_tokenizer_is_self_consistent():
    plan = build_prompt(LONG_REQUEST * 4, industry="fashion", trigger="sks", style="instagram_square", max_tokens=40)
    assert plan.token_count == estimate_tokens(plan.prompt) <= 40
    assert plan.dropped


def test_fit_to_budget_drops_lowest_priority_trailing_phrases_first():
    parts = [("a", "x, y", 100), ("b", "p, q", 10), ("c", "r", 50)]
    n_phrases = lambda text: len(text.split(", ")) if text else 0  # noqa: E731
    assert fit_to_budget(parts, n_phrases, 5) == ("x, y, p, q, r", [])
    assert fit_to_budget(parts, n_phrases, 3) == ("x, y, r", ["q", "p"])
    assert fit_to_budget(parts, n_phrases, 2) == ("x, y", ["q", "p", "r"])
    assert fit_to_budget(parts, n_phrases, 1) == ("x, y", ["q", "p", "r"])  # protected: caller's problem


# ---------------------------------------------------------------- options

def test_modes_and_styles_change_the_wording():
    product = build_prompt("케이크", mode="product", style="instagram_story", max_tokens=10**4)
    person = build_prompt("케이크", mode="person", max_tokens=10**4)
    assert "product photography" in product.prompt
    assert "vertical composition" in product.prompt and "clean top and bottom" in product.prompt
    assert "portrait" in person.prompt and "product photography" not in person.prompt
    assert product.negative_prompt != person.negative_prompt


@pytest.mark.parametrize("kwargs,field", [
    (dict(mode="video"), "mode"),
    (dict(style="billboard"), "style"),
    (dict(max_tokens=2), "max_tokens"),
    (dict(trigger="two words"), "trigger"),
])
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(PromptError, match=field):
        build_prompt("커피", **kwargs)


def test_deterministic_and_serializable(clip_count):
    a = build_prompt(LONG_REQUEST, industry="카페", trigger="sks", style="kakao_square", count_tokens=clip_count)
    b = build_prompt(LONG_REQUEST, industry="카페", trigger="sks", style="kakao_square", count_tokens=clip_count)
    assert a.to_dict() == b.to_dict()
    d = a.to_dict()
    assert d["industry"] == "cafe" and d["budget"] == 77
    assert {"name", "text", "priority"} <= set(d["parts"][0])
