"""What the ad service publishes in its OpenAPI document: the request models' fields with this deployment's bounds.

BentoML reads a route's input schema from the route function's signature and enforces it before the route runs.
The service wants the reverse: publish the full contract (types, bounds, formats, required fields) while
:func:`fitad.serve.requests.validate` stays the one check, so every refusal carries its own message and field.
:func:`route_signature` gives a route that signature (each field typed ``Any`` with its JSON schema attached) and
:func:`publish_required` marks the required fields in the published schema only. No web framework is imported.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field

from fitad.serve.requests import field_schemas

__all__ = ["documented", "publish_required", "route_signature"]

REQUIRED_ATTR = "__fitad_required__"


def route_signature(model: type[BaseModel], config: Any, files: tuple[str, ...] = (),
                    ctx_type: Any = inspect.Parameter.empty) -> inspect.Signature:
    """``(self, *, ctx, <files>, [request], <model's fields>)``: files as paths, every field ``Any`` with its
    bounded JSON schema; a multipart route (``files`` given) also takes all fields as one JSON ``request`` field."""
    from pathlib import Path

    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_OR_KEYWORD), P("ctx", P.KEYWORD_ONLY, annotation=ctx_type)]
    params += [P(name, P.KEYWORD_ONLY, default=None, annotation=Path) for name in files]
    if files:
        params.append(P("request", P.KEYWORD_ONLY, annotation=Any,
                        default=Field(None, description="all the fields below as one JSON object")))
    params += [P(name, P.KEYWORD_ONLY, annotation=Any, default=Field(None, json_schema_extra=schema))
               for name, schema in field_schemas(model, config).items()]
    return inspect.Signature(params)


def documented(model: type[BaseModel], config: Any, files: tuple[str, ...] = (),
               ctx_type: Any = inspect.Parameter.empty) -> Callable[[Callable], Callable]:
    """Decorator: the route gets :func:`route_signature` and remembers its required fields (the first file, when
    there are files, and the model's required fields) for :func:`publish_required`."""
    def apply(func: Callable) -> Callable:
        func.__signature__ = route_signature(model, config, files, ctx_type)
        setattr(func, REQUIRED_ATTR, [*files[:1], *model.model_json_schema().get("required", ())])
        return func
    return apply


def publish_required(apis: Iterable[Any]) -> None:
    """Mark each :func:`documented` route's required fields in its published input schema (BentoML API methods:
    ``.func`` and a pydantic ``.input_spec``); validation of the input model is unchanged."""
    for api in apis:
        required = getattr(api.func, REQUIRED_ATTR, None)
        if required:
            api.input_spec.model_config["json_schema_extra"] = {"required": list(required)}
            api.input_spec.model_rebuild(force=True)
