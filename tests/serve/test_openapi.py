"""The published input schema of a route: the model's fields with bounds, required fields marked, no enforcement."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

from pydantic import create_model

from fitad.serve.config import ServeConfig
from fitad.serve.openapi import documented, publish_required, route_signature
from fitad.serve.requests import AdRequest, Txt2ImgRequest

CONFIG = ServeConfig(max_steps=7)


def _input_model(func):
    """The input model a framework builds from a route's signature (self and ctx skipped), as BentoML does."""
    params = list(inspect.signature(func).parameters.values())[2:]
    return create_model("Input", **{p.name: (p.annotation, p.default) for p in params})


def test_signature_lists_every_field_of_the_model_with_its_bounds():
    sig = route_signature(Txt2ImgRequest, CONFIG)
    assert list(sig.parameters)[:2] == ["self", "ctx"]
    assert set(sig.parameters) - {"self", "ctx"} == set(Txt2ImgRequest.model_fields)

    def route(self, ctx, **fields):
        return fields
    route.__signature__ = sig
    schema = _input_model(route).model_json_schema()
    assert schema["properties"]["steps"]["anyOf"][0]["maximum"] == 7
    assert "instagram_story" in schema["properties"]["format"]["anyOf"][0]["enum"]


def test_multipart_signature_has_files_and_the_request_field():
    sig = route_signature(AdRequest, CONFIG, files=("image", "logo"))
    assert sig.parameters["image"].annotation is Path and sig.parameters["logo"].default is None
    assert "request" in sig.parameters


def test_required_fields_are_published_but_not_enforced():
    @documented(Txt2ImgRequest, CONFIG)
    def txt2img(self, ctx, **fields):
        return fields

    @documented(AdRequest, CONFIG, files=("image", "product_image"))
    def ad(self, ctx, **fields):
        return fields

    apis = [SimpleNamespace(func=f, input_spec=_input_model(f)) for f in (txt2img, ad)]
    assert "required" not in apis[0].input_spec.model_json_schema()
    publish_required(apis)
    assert apis[0].input_spec.model_json_schema()["required"] == ["prompt"]
    assert apis[1].input_spec.model_json_schema()["required"] == ["image"]
    # validation is still the service's: a body without the required fields builds the input model
    assert apis[0].input_spec().prompt is None
    assert apis[1].input_spec(steps="not checked here").steps == "not checked here"
