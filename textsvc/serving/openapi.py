"""The service's OpenAPI 3.1 description, served at /openapi.json.

Generated: each request body from its dataclass in `requests.py` or `chat_requests.py` (types from the annotations;
bounds, defaults and help from the fields), the server's caps from its ServingConfig, the error codes from `ErrorCode`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from textsvc import __version__
from textsvc.config.sampling import served_bounds
from textsvc.config.serving import ServingConfig
from textsvc.errors import HTTP, ErrorCode, error_body
from textsvc.serving.chat_requests import ChatRequest
from textsvc.serving.requests import ClassifyRequest, CompletionRequest, TgiRequest

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", dict: "object"}
BODIES = {cls.__name__: cls for cls in (ClassifyRequest, CompletionRequest, TgiRequest, ChatRequest)}


def type_schema(hint: Any) -> dict:
    """The JSON Schema of a field's annotation: str, int, float, bool, None, tuple[X, ...], unions, dataclasses."""
    if dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (tuple, list):
        return {"type": "array", "items": type_schema(args[0])}
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        members = [type_schema(arg) for arg in args]
        if all(set(member) == {"type"} for member in members):  # `int | None`: {"type": ["integer", "null"]}
            return {"type": [member["type"] for member in members]}
        return {"anyOf": members}
    return {"type": JSON_TYPES[hint]}


def field_schema(field: dataclasses.Field, hint: Any, caps: dict) -> dict:
    """A request field's type, bounds (its own, then the server's caps), default and meaning."""
    schema = {**type_schema(hint), **field.metadata.get("schema", {}), **caps.get(field.metadata.get("sampling"), {})}
    if "enum" in schema and "null" in str(schema.get("type")) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]  # null: the field left unset
    if field.default is not dataclasses.MISSING:
        schema["default"] = field.default
    if "help" in field.metadata:
        schema["description"] = field.metadata["help"]
    return schema


def object_schemas(cls: type, caps: dict, strict: bool = False) -> dict[str, dict]:
    """`cls`'s schema and those of the dataclasses in its fields, by name. Nested ones (`parameters`) are strict:
    requests.py refuses names they do not know, while a body's unknown names are ignored."""
    hints, fields = typing.get_type_hints(cls), dataclasses.fields(cls)
    schema = {"type": "object", "description": cls.__doc__.splitlines()[0],
              "properties": {field.name: field_schema(field, hints[field.name], caps) for field in fields},
              "required": [field.name for field in fields if field.default is dataclasses.MISSING
                           and field.default_factory is dataclasses.MISSING]}
    if strict:
        schema["additionalProperties"] = False
    schemas = {cls.__name__: schema}
    for field in fields:
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            hint = typing.get_args(hint)[0]  # a list of objects (chat messages)
        if dataclasses.is_dataclass(hint):
            schemas.update(object_schemas(hint, caps, strict=True))
    return schemas


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(summary: str, request: type | None = None, stream: bool = False, secured: bool = False) -> dict:
    ok = {"content": {"text/event-stream": {"schema": {"type": "string"}}}} if stream else _json({"type": "object"})
    operation = {"summary": summary, "responses": {
        "200": {"description": "success", **ok},
        "default": {"description": "an error", **_json({"$ref": "#/components/schemas/Error"})}}}
    if request:
        operation["requestBody"] = {"required": True, **_json({"$ref": f"#/components/schemas/{request.__name__}"})}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def paths() -> dict:
    """Every route, with its request body's dataclass."""
    return {
        "/classify": {"post": _operation("Classify texts (Hugging Face Inference API shape)", ClassifyRequest,
                                         secured=True)},
        "/generate": {"post": _operation("Continue a prompt (text-generation-inference shape)", TgiRequest,
                                         secured=True)},
        "/generate_stream": {"post": _operation("Continue a prompt, token events as SSE (TGI)", TgiRequest,
                                                stream=True, secured=True)},
        "/v1/completions": {"post": _operation("OpenAI-compatible completion, streamed with stream=true",
                                               CompletionRequest, secured=True)},
        "/v1/chat/completions": {"post": _operation("OpenAI-compatible chat, through the model's chat template; "
                                                    "streamed with stream=true", ChatRequest, secured=True)},
        "/v1/models": {"get": _operation("Generators, in OpenAI's list shape")},
        "/info": {"get": _operation("A model's limits: TGI's shape for a generator, TEI's for a classifier "
                                    "(?model=NAME; default: the default generator)", secured=True)},
        "/tokenize": {"post": _operation("Tokens with their offsets (TGI's and TEI's /tokenize)", secured=True)},
        "/predict": {"post": _operation("TEI's classification route: /classify with `truncate` and `raw_scores`",
                                        secured=True)},
        "/models": {"get": _operation("Every model: those up (status ready), then those that failed to load, "
                                      "with their error")},
        "/models/{name}": {"get": _operation("One model")},
        "/models/{name}/card": {"get": _operation("A model card: markdown and its YAML metadata")},
        "/models/{name}/files/{file}": {"get": _operation("A picture the card shows: training_curves.png, "
                                                          "confusion_matrix.png")},
        "/": {"get": {"summary": "The writers' page: pick a model, generate (streamed) and classify in a browser",
                      "responses": {"200": {"description": "the page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}},
              "post": _operation("TGI's route: /generate, or /generate_stream with stream=true", TgiRequest,
                                 secured=True)},
        "/health": {"get": _operation("The process is up")},
        "/ready": {"get": _operation("Ready for traffic: every default model and a model of each kind found are up "
                                     "(every model, with require_all_models); 503 not_ready while loading, "
                                     "load_failed, or shutting_down")},
        "/admin/reload": {"post": _operation("Publish new, changed and removed model directories (admin key)",
                                             secured=True)},
        "/metrics": {"get": _operation("Prometheus metrics")},
        "/openapi.json": {"get": _operation("This document")},
    }


def error_schemas() -> dict[str, dict]:
    """The error shapes of textsvc's, TGI's and OpenAI's routes, each with the code enum of `ErrorCode`."""
    codes = [code for code in ErrorCode if code.surface == HTTP]
    statuses = {code.http_status or 500 for code in codes}
    tgi_types = sorted({error_body("tgi", ErrorCode.HTTP_ERROR, "", status=s)["error_type"] for s in statuses})
    openai_types = sorted({error_body("openai", ErrorCode.HTTP_ERROR, "", status=s)["error"]["type"]
                           for s in statuses})
    code = {"$ref": "#/components/schemas/ErrorCode"}
    native = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": code, "message": {"type": "string"}, "field": {"type": "string"}}}}}
    tgi = {"type": "object", "required": ["error", "error_type", "code"], "properties": {
        "error": {"type": "string"}, "error_type": {"enum": tgi_types}, "code": code, "field": {"type": "string"}}}
    openai = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"enum": openai_types},
                       "param": {"type": ["string", "null"]}, "code": code}}}}
    # textsvc's routes answer `native`; TGI's routes (/, /generate, /generate_stream) `tgi`; /v1 `openai`
    return {"Error": {"oneOf": [native, tgi, openai]},
            "ErrorCode": {"type": "string", "enum": [code.value for code in codes],
                          "description": "; ".join(f"{code.value} ({code.http_status or 'its own status'}): "
                                                   f"{code.meaning}" for code in codes)}}


def openapi_document(config: ServingConfig | None = None) -> dict:
    """The whole document, with the caps of `config` (default: ServingConfig's defaults)."""
    config = config or ServingConfig()
    caps, routes, schemas = served_bounds(config.max_new_tokens_limit), paths(), {}
    for route in routes.values():
        for operation in route.values():
            if "requestBody" in operation:  # documents the dataclass of that name in requests.py
                name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                schemas.update(object_schemas(BODIES[name], caps))
    return {"openapi": "3.1.0", "info": {"title": "textsvc", "version": __version__}, "paths": routes,
            "components": {"schemas": {**schemas, **error_schemas()},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
