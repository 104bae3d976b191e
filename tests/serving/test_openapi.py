"""/openapi.json is generated: every request field with its type, bounds and default; the error codes of the
registry; no reference left dangling."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import HTTP, ErrorCode
from textsvc.serving import requests
from textsvc.serving.openapi import openapi_document, type_schema

BODIES = [requests.ClassifyRequest, requests.ClassifyParameters, requests.TgiRequest, requests.TgiParameters,
          requests.CompletionRequest]


@pytest.fixture(scope="module")
def document():
    return json.loads(json.dumps(openapi_document(ServingConfig(max_new_tokens_limit=100))))  # as served: JSON


def properties(document, cls) -> dict:
    return document["components"]["schemas"][cls.__name__]["properties"]


@pytest.mark.parametrize("cls", BODIES, ids=lambda cls: cls.__name__)
def test_every_request_field_is_documented_with_its_type(document, cls):
    documented, hints = properties(document, cls), typing.get_type_hints(cls)
    assert list(documented) == [field.name for field in dataclasses.fields(cls)]
    for name, schema in documented.items():
        expected = json.loads(json.dumps(type_schema(hints[name])))
        assert {key: schema[key] for key in expected} == expected, name
        assert "description" in schema or "$ref" in schema, name


def test_bounds_defaults_and_enums_come_from_the_fields(document):
    tgi = properties(document, requests.TgiParameters)
    assert tgi["max_new_tokens"] == {"type": "integer", "minimum": 1, "maximum": 100,  # the server's cap
                                     "default": SamplingConfig().max_new_tokens,
                                     "description": tgi["max_new_tokens"]["description"]}
    assert (tgi["top_p"]["exclusiveMinimum"], tgi["top_p"]["maximum"]) == (0, 1)
    assert tgi["temperature"]["minimum"] == 0 and tgi["seed"]["maximum"] == 2**63 - 1
    assert tgi["stop"]["maxItems"] == 16 and tgi["truncate"]["minimum"] == 1
    assert tgi["best_of"]["enum"] == [1, None] and tgi["grammar"]["enum"] == [None]
    completion = properties(document, requests.CompletionRequest)
    assert completion["max_tokens"]["default"] == 16 and completion["max_tokens"]["maximum"] == 100
    classify = properties(document, requests.ClassifyParameters)
    assert classify["function_to_apply"]["enum"] == ["softmax", "sigmoid", "none", None]
    assert classify["top_k"]["minimum"] == 1 and classify["truncation"]["default"] is True
    schemas = document["components"]["schemas"]
    assert schemas["TgiParameters"]["additionalProperties"] is False  # unknown parameters are refused
    assert "additionalProperties" not in schemas["TgiRequest"] and schemas["TgiRequest"]["required"] == ["inputs"]


def test_error_codes_are_the_registry(document):
    enum = document["components"]["schemas"]["ErrorCode"]["enum"]
    assert enum == [code.value for code in ErrorCode if code.surface == HTTP]
    tgi = document["components"]["schemas"]["TgiError"]["properties"]["error_type"]["enum"]
    assert tgi == ["generation", "overloaded", "unauthorized", "validation"]


def test_routes_and_references(document):
    assert {"/classify", "/generate", "/generate_stream", "/", "/v1/completions", "/v1/models", "/models",
            "/models/{name}", "/models/{name}/card", "/health", "/ready", "/metrics"} <= set(document["paths"])
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in document["components"]["schemas"], ref
    generate = document["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert generate == {"$ref": "#/components/schemas/TgiRequest"}


def test_each_route_documents_its_answers_in_its_own_error_shape(document):
    paths = document["paths"]
    shapes = {path: paths[path]["post"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
              for path in ("/classify", "/generate", "/v1/completions", "/predict")}
    assert {path: ref.rsplit("/", 1)[1] for path, ref in shapes.items()} == {
        "/classify": "Error", "/generate": "TgiError", "/v1/completions": "OpenAIError", "/predict": "TgiError"}
    classify = paths["/classify"]["post"]["responses"]
    assert {"400", "401", "404", "413", "415", "429", "500", "503", "504"} <= set(classify)
    assert "Retry-After" in classify["503"]["headers"] and "overloaded" in classify["503"]["description"]
    assert classify["200"]["content"]["application/json"]["schema"]["type"] == "array"  # a list per text
    assert set(paths["/v1/completions"]["post"]["responses"]["200"]["content"]) == {"application/json",
                                                                                      "text/event-stream"}
    assert set(paths["/generate_stream"]["post"]["responses"]["200"]["content"]) == {"text/event-stream"}
    assert [p["name"] for p in paths["/models/{name}/files/{file}"]["get"]["parameters"]] == ["name", "file"]
    assert not any("default" in op["responses"] for route in paths.values() for op in route.values())  # each status
