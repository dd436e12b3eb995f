"""Request models: bounds from ServeConfig, every refusal a 4xx ApiError naming the field."""

from __future__ import annotations

import json

import pytest

from fitad.serve.config import ServeConfig
from fitad.serve.errors import ApiError, request_id_var
from fitad.serve.requests import (MAX_SEED, AdRequest, CopyRequest, Txt2ImgRequest, parse_json, pick_seed,
                                  validate)

CFG = ServeConfig()


def refused(cls, data, config=CFG) -> ApiError:
    with pytest.raises(ApiError) as info:
        validate(cls, data, config)
    return info.value


def test_defaults_and_normalisation():
    req = validate(Txt2ImgRequest, {"prompt": "따뜻한 라떼", "industry": "빵집", "format": " 4:5 ", "lang": "en"}, CFG)
    assert req.industry == "bakery"          # Korean name -> id, as the CLI accepts
    assert req.format == "4:5"
    assert (req.steps, req.guidance, req.seed, req.lora, req.lora_scale) == (None, None, None, None, 1.0)
    ad = validate(AdRequest, {}, CFG)
    assert ad.prompt == "" and ad.format == "instagram_square" and ad.industry == "cafe" and ad.lang == "ko"
    assert validate(CopyRequest, {"industry": "Beauty Salon", "offer": "20% off"}, CFG).industry == "beauty_salon"


@pytest.mark.parametrize("data,field", [
    ({}, "prompt"),                                        # missing
    ({"prompt": "   "}, "prompt"),                         # blank
    ({"prompt": "x" * 100_000}, "prompt"),                 # 100 kB prompt
    ({"prompt": "a\x00b"}, "prompt"),                      # NUL
    ({"prompt": "a\ud800b"}, "prompt"),                    # lone surrogate: not UTF-8 text
    ({"prompt": b"\xff\xfe bad"}, "prompt"),               # bytes that are not UTF-8
    ({"prompt": 12}, "prompt"),
    ({"prompt": "x", "negative_prompt": "n" * 1001}, "negative_prompt"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "steps": 51}, "steps"),
    ({"prompt": "x", "steps": -3}, "steps"),
    ({"prompt": "x", "steps": 2.5}, "steps"),
    ({"prompt": "x", "steps": True}, "steps"),
    ({"prompt": "x", "guidance": 20.5}, "guidance"),
    ({"prompt": "x", "guidance": float("nan")}, "guidance"),
    ({"prompt": "x", "guidance": float("inf")}, "guidance"),
    ({"prompt": "x", "guidance": "nan"}, "guidance"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": MAX_SEED + 1}, "seed"),
    ({"prompt": "x", "lora_scale": 2.01}, "lora_scale"),
    ({"prompt": "x", "lora_scale": -0.1}, "lora_scale"),
    ({"prompt": "x", "format": "billboard"}, "format"),
    ({"prompt": "x", "format": "10x10"}, "format"),
    ({"prompt": "x", "format": "5000x1000"}, "format"),
    ({"prompt": "x", "industry": "bank"}, "industry"),
    ({"prompt": "x", "lang": "fr"}, "lang"),
    ({"prompt": "x", "headline": "h" * 201}, "headline"),
    ({"prompt": "x", "shop_name": "s" * 201}, "shop_name"),
    ({"prompt": "x", "brand_colors": ["red"]}, "brand_colors"),
    ({"prompt": "x", "unknown_knob": 1}, "unknown_knob"),  # extra field
    ({"prompt": "x", "mode": "product"}, "mode"),          # the mode comes from the route
])
def test_bad_txt2img_fields_are_422_naming_the_field(data, field):
    err = refused(Txt2ImgRequest, data)
    assert (err.status, err.code, err.field) == (422, "invalid_field", field)
    assert f"'{field}'" in err.message
    assert "Traceback" not in err.message and len(err.message) < 600


@pytest.mark.parametrize("lora", ["../../etc/passwd", "/etc/passwd", "..", "a/../b", "models:/x@approved",
                                  "file:///etc/passwd", "s3://bucket/lora", "C:\\lora.safetensors", "x@", "x/",
                                  "x/1.5", "lora.safetensors/../../x", "-x", "x@a/1", "x\x00y", ""])
def test_path_like_lora_values_are_refused(lora):
    err = refused(Txt2ImgRequest, {"prompt": "x", "lora": lora})
    assert (err.status, err.field) == (422, "lora")


@pytest.mark.parametrize("lora", ["fitad-sks", "fitad-sks@approved", "fitad-sks@candidate", "fitad-sks/12",
                                  "my_char.v2"])
def test_registry_references_are_accepted(lora):
    assert validate(AdRequest, {"lora": lora}, CFG).lora == lora


def test_bounds_come_from_the_config():
    tight = ServeConfig(max_steps=10, max_guidance=5.0, max_prompt_chars=20, max_text_chars=5)
    assert validate(Txt2ImgRequest, {"prompt": "x", "steps": 20}, CFG).steps == 20
    err = refused(Txt2ImgRequest, {"prompt": "x", "steps": 20}, tight)
    assert err.field == "steps" and "between 1 and 10" in err.message
    assert refused(Txt2ImgRequest, {"prompt": "x", "guidance": 7.0}, tight).field == "guidance"
    assert refused(Txt2ImgRequest, {"prompt": "y" * 21}, tight).field == "prompt"
    assert refused(CopyRequest, {"shop_name": "123456"}, tight).field == "shop_name"


def test_copy_request_refuses_render_fields():
    err = refused(CopyRequest, {"steps": 3})
    assert err.field == "steps" and "accepted fields are headline, industry, lang, offer, shop_name" in err.message


@pytest.mark.parametrize("raw,status", [
    (b"\xff\xfe{}", 400),            # not UTF-8
    (b"{bad json", 400),
    (b"[1, 2]", 400),                # not an object
    (b'"text"', 400),
    (b'{"prompt": "x", "guidance": NaN}', 422),
    (b'{"prompt": "x", "brand_colors": ["#ffffff", Infinity]}', 422),
])
def test_raw_bodies(raw, status):
    err = refused(Txt2ImgRequest, raw)
    assert err.status == status
    if status == 422:
        assert err.field in ("guidance", "brand_colors[1]")


def test_parse_json_accepts_utf8_objects_and_empty_body():
    assert parse_json("".encode()) == {}
    assert parse_json(json.dumps({"prompt": "카페 라떼"}).encode("utf-8")) == {"prompt": "카페 라떼"}
    assert validate(Txt2ImgRequest, b'{"prompt": "\\uc548\\ub155", "steps": "20"}', CFG).steps == 20


def test_error_body_shape_carries_the_request_id():
    err = refused(Txt2ImgRequest, {"prompt": "x", "steps": 999})
    token = request_id_var.set("req-123")
    try:
        body = err.body()
    finally:
        request_id_var.reset(token)
    assert body == {"error": {"code": "invalid_field", "message": err.message, "field": "steps",
                              "request_id": "req-123"}}
    assert "request_id" not in err.body()["error"]          # outside a request
    assert json.loads(err.json_bytes("abc"))["error"]["request_id"] == "abc"


def test_pick_seed():
    assert pick_seed(7) == 7
    seeds = {pick_seed(None) for _ in range(20)}
    assert len(seeds) > 15 and all(0 <= s <= MAX_SEED for s in seeds)


def test_nested_fields_are_named_with_their_index():
    err = refused(Txt2ImgRequest, {"prompt": "x", "brand_colors": ["#ffffff", 7]})
    assert err.field == "brand_colors[1]" and "'brand_colors[1]' must be text" in err.message


def test_several_problems_are_counted_but_the_first_is_named():
    err = refused(Txt2ImgRequest, {"prompt": "x", "steps": 999, "guidance": -1, "seed": -1})
    assert err.field == "steps" and "2 more problems" in err.message


def test_api_error_refuses_success_statuses():
    with pytest.raises(ValueError):
        ApiError(200, "ok", "fine")


def test_api_error_survives_pickling():
    import pickle

    err = ApiError(429, "busy", "the queue is full", None, {"Retry-After": "5"})
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.status, copy.code, copy.message, copy.field, copy.headers) == (429, "busy", "the queue is full",
                                                                                None, {"Retry-After": "5"})


# ---- field_schemas: the published contract agrees with validate()
@pytest.mark.parametrize("body", [
    {"prompt": "a cup of coffee"}, {"prompt": "x", "steps": 3}, {"prompt": "x", "steps": 0}, {"prompt": "x", "steps": 4},
    {"prompt": "x", "guidance": 7.5}, {"prompt": "x", "guidance": -1}, {"prompt": "x", "format": "instagram_story"},
    {"prompt": "x", "format": "tiktok"}, {"prompt": "x", "format": "640x480"}, {"prompt": ""}, {"prompt": "   "},
    {"prompt": "y" * 41}, {"prompt": "x", "headline": "h" * 20}, {"prompt": "x", "headline": "h" * 21},
    {"prompt": "x", "lora": "fitad-sks@approved"}, {"prompt": "x", "lora": "../../etc/passwd"},
    {"prompt": "x", "brand_colors": ["#ff0000"]}, {"prompt": "x", "brand_colors": ["red"]},
    {"prompt": "x", "industry": "bakery"}, {"prompt": "x", "industry": "spaceport"}, {"prompt": "x", "seed": -1},
    {"prompt": "x", "lang": "ja"}, {"prompt": "x", "lora_scale": 2.5}, {"format": "1:1"}, {"prompt": "x", "bogus": 1},
    {"prompt": "x", "format": "10x10"}, {"prompt": "x", "format": "9999x9999"}, {"prompt": "x", "format": "64x4096"},
    {"prompt": "x", "format": "4097x64"}, {"prompt": "x", "format": "1080x1350"}, {"prompt": "x", "industry": "카페"},
    {"prompt": "x", "industry": "헤어샵"}, {"prompt": "x", "industry": "우주정거장"},
])
def test_published_schema_accepts_exactly_what_validate_accepts(body):
    jsonschema = pytest.importorskip("jsonschema")
    from fitad.serve.config import ServeConfig
    from fitad.serve.requests import field_schemas

    config = ServeConfig(max_steps=3, max_prompt_chars=40, max_text_chars=20)
    model = Txt2ImgRequest
    schema = {"type": "object", "properties": field_schemas(model, config), "additionalProperties": False,
              "required": model.model_json_schema()["required"]}
    try:
        jsonschema.validate(body, schema)
        published_ok = True
    except jsonschema.ValidationError:
        published_ok = False
    try:
        validate(model, body, config)
        validated_ok = True
    except ApiError:
        validated_ok = False
    assert published_ok == validated_ok, (body, published_ok, validated_ok)


def test_request_fields_refuses_an_unknown_multipart_part_by_name():
    from fitad.serve.requests import request_fields

    form = {"headline": "hi", "steps": None}
    allowed = ["headline", "steps", "image"]
    assert request_fields(None, form, sent=["headline", "image", "request"], allowed=allowed) == {"headline": "hi"}
    with pytest.raises(ApiError) as err:
        request_fields(None, form, sent=["headline", "image", "colour"], allowed=allowed)
    assert (err.value.status, err.value.field) == (422, "colour") and "headline" in err.value.message
    assert request_fields({"prompt": "x"}, form, sent=["anything"], allowed=allowed) == {"prompt": "x"}  # JSON


def test_route_fields_reads_multipart_text_as_sent_and_leaves_files_to_the_route():
    from types import SimpleNamespace

    from fitad.serve.requests import route_fields

    # the framework read the part "2024" as JSON (a number); the text as sent is what the request model sees
    state = SimpleNamespace(json=None, form_fields=["headline", "image", "request"],
                            form_text={"headline": "2024", "request": '{"steps": 3}', "image": "http://x/"})
    declared = {"headline": 2024, "steps": None, "request": None}
    fields = route_fields(state, declared, ["image"])
    assert fields == {"headline": "2024", "steps": 3}
    assert validate(AdRequest, fields).headline == "2024"
    stored_task = SimpleNamespace()  # no middleware state: the framework's reading
    assert route_fields(stored_task, {"prompt": "x", "steps": None}, ()) == {"prompt": "x"}
