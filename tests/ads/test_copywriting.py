"""Ad captions: Instagram limits, hashtag hygiene, determinism, every industry in both languages."""

from __future__ import annotations

import re

import pytest

from fitad.ads.copywriting import make_copy, normalize_hashtag
from fitad.generate.industries import INDUSTRIES

HANGUL = re.compile(r"[\uac00-\ud7a3]")
TAG = re.compile(r"^#\w+$")
IG_MAX_TAGS, IG_MAX_CHARS = 30, 2200  # Instagram's limits


def check_instagram(copy) -> None:
    assert len(copy.caption) <= IG_MAX_CHARS
    assert len(copy.hashtags) <= IG_MAX_TAGS
    assert all(TAG.match(t) for t in copy.hashtags), copy.hashtags
    assert len({t.casefold() for t in copy.hashtags}) == len(copy.hashtags)
    if copy.hashtags:
        assert copy.caption.endswith(" ".join(copy.hashtags))
    # No tag in the caption that the list does not hold, and no template placeholder left behind.
    assert set(re.findall(r"#\w+", copy.caption)) <= set(copy.hashtags)
    assert not re.search(r"\{(shop|headline|offer)\}", copy.caption)


@pytest.mark.parametrize("industry_id", sorted(INDUSTRIES))
@pytest.mark.parametrize("lang", ["ko", "en"])
def test_every_industry_in_both_languages(industry_id, lang):
    bare = make_copy(industry_id, lang=lang)
    full = make_copy(industry_id, lang=lang, shop_name="Momo", headline="Spring menu", offer="10% off")
    for copy in (bare, full):
        check_instagram(copy)
        assert copy.industry == industry_id and copy.lang == lang
        assert copy.hashtags
        body = copy.caption[:-len(" ".join(copy.hashtags))].strip()
        assert body
        if lang == "ko":
            assert HANGUL.search(body)
        else:
            assert not HANGUL.search(copy.caption)
    for value in ("Momo", "Spring menu", "10% off"):
        assert value in full.caption
    assert full.hashtags[0] == "#Momo"


def test_korean_name_resolves_and_fields_appear():
    copy = make_copy("카페", shop_name="카페 모모", headline="봄 신메뉴 출시", offer="4월 한 달 10% 할인")
    assert copy.industry == "cafe"
    assert "카페 모모" in copy.caption and "봄 신메뉴 출시" in copy.caption and "4월 한 달 10% 할인" in copy.caption
    assert copy.hashtags[0] == "#카페모모"


def test_limits_with_very_long_inputs_and_many_hashtags():
    extra = [f"tag{i}" for i in range(200)]
    copy = make_copy("restaurant", shop_name="가" * 3000, headline="맛있는 한 끼 " * 400, offer="할인 " * 500,
                     extra_hashtags=extra, max_hashtags=100)
    check_instagram(copy)
    assert len(copy.caption) == IG_MAX_CHARS or copy.hashtags == []

    # A body that leaves room for some tags: tags are trimmed from the end, the text is kept whole.
    headline = "x" * 2050
    copy = make_copy("cafe", lang="en", headline=headline, extra_hashtags=extra)
    check_instagram(copy)
    assert headline in copy.caption
    assert 0 < len(copy.hashtags) < IG_MAX_TAGS
    assert copy.hashtags == [f"#tag{i}" for i in range(len(copy.hashtags))]
    # It was trimmed no further than needed: one more tag would not fit.
    assert len(copy.caption) + len(f" #tag{len(copy.hashtags)}") > IG_MAX_CHARS


def test_hashtag_count_is_capped():
    extra = [f"extra{i}" for i in range(60)]
    assert len(make_copy("fashion", extra_hashtags=extra, max_hashtags=500).hashtags) == IG_MAX_TAGS
    assert len(make_copy("fashion", extra_hashtags=extra, max_hashtags=5).hashtags) == 5
    assert make_copy("fashion", max_hashtags=0).hashtags == []
    with pytest.raises(ValueError, match="max_hashtags"):
        make_copy("fashion", max_hashtags=-1)


def test_hashtags_are_normalized_and_unique():
    copy = make_copy("cafe", lang="en", extra_hashtags=["#Cafe", "cafe", "CAFE", "# ca fe", "latte!!", "#2024",
                                                        "", "###", "봄 신메뉴", "#봄신메뉴"])
    check_instagram(copy)
    folded = [t.casefold() for t in copy.hashtags]
    assert folded.count("#cafe") == 1 and folded.count("#latte") == 1 and folded.count("#봄신메뉴") == 1
    assert copy.hashtags[0] == "#Cafe"  # the first spelling wins
    assert "#2024" not in copy.hashtags and "#" not in copy.hashtags
    # A string of tags is split on spaces, commas and '#'.
    assert make_copy("cafe", extra_hashtags="#딸기라떼 #봄, 카페모모").hashtags[:3] == ["#딸기라떼", "#봄", "#카페모모"]


@pytest.mark.parametrize("raw,expected", [
    ("#카페 모모!", "#카페모모"), ("  latte_art ", "#latte_art"), ("##Sale2024", "#Sale2024"), ("#1+1", ""), ("", ""),
])
def test_normalize_hashtag(raw, expected):
    assert normalize_hashtag(raw) == expected


def test_deterministic_and_variants_differ():
    kwargs = dict(shop_name="Momo", headline="New", offer="1+1")
    assert make_copy("bakery", **kwargs).to_dict() == make_copy("bakery", **kwargs).to_dict()
    for industry_id, ind in INDUSTRIES.items():
        for lang, templates in (("ko", ind.copy_ko), ("en", ind.copy_en)):
            captions = [make_copy(industry_id, lang=lang, variant=v).caption for v in range(len(templates))]
            assert len(set(captions)) == len(captions), (industry_id, lang)
            # variant wraps around the templates
            assert make_copy(industry_id, lang=lang, variant=len(templates)).caption == captions[0]
            assert make_copy(industry_id, lang=lang, variant=-1).caption == captions[-1]


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="'fr'"):
        make_copy("cafe", lang="fr")
    with pytest.raises(ValueError, match="spaceship"):
        make_copy("spaceship")
    with pytest.raises(ValueError, match="headline"):
        make_copy("cafe", headline=None)
    with pytest.raises(ValueError, match="extra_hashtags"):
        make_copy("cafe", extra_hashtags=[1, 2])
