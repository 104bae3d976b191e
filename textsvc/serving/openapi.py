"""The service's OpenAPI 3.1 description, served at /openapi.json.

Generated: each request body from its dataclass in `requests.py` or `chat_requests.py` (types from the annotations;
bounds, defaults and help from the fields), the server's caps from its ServingConfig, the error codes from `ErrorCode`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from textsvc import __version__
from textsvc.config.common import field_types
from textsvc.config.sampling import served_bounds
from textsvc.config.serving import ServingConfig
from textsvc.errors import HTTP, ErrorCode, error_body
from textsvc.serving.chat_requests import ChatRequest
from textsvc.serving.http import error_style
from textsvc.serving.openapi_responses import EVENTS, OK, PREDICT_REQUEST, TOKENIZE_REQUEST
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
    hints, fields = field_types(cls), dataclasses.fields(cls)
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


TEXT, BYTES = {"type": "string"}, {"type": "string", "format": "binary"}
# what a request may be refused with before and during its work: every status of `ErrorCode` (405 aside: the
# route takes its documented method) on the inference routes; a bug's 500 anywhere
INFERENCE_ERRORS = sorted({code.http_status or 500 for code in ErrorCode
                           if code.surface == HTTP and code.http_status not in (None, 405)})


def _operation(summary: str, ok: dict | None, request: dict | type | None = None, stream: dict | None = None,
               secured: bool = False, errors: tuple[int, ...] = (), media: str = "application/json") -> dict:
    """One operation: its 200 body (`ok`, as `media`; `stream`: the schema of each server-sent event, when it can
    stream), request body and error statuses (the error shape is added per route by `openapi_document`)."""
    content = {**({media: {"schema": ok}} if ok else {}),
               **({"text/event-stream": {"schema": stream}} if stream else {})}
    operation = {"summary": summary, "responses": {
        "200": {"description": "success", "content": content},
        **{str(status): {"description": "an error"} for status in
           sorted({500, *errors, *(INFERENCE_ERRORS if secured else ())})}}}
    if request:
        name = request.__name__ if isinstance(request, type) else request["title"]
        operation["requestBody"] = {"required": True, **_json({"$ref": f"#/components/schemas/{name}"})}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def paths() -> dict:
    """Every route, with its request body and its answers."""
    generate = OK["generate"]
    return {
        "/classify": {"post": _operation("Classify texts (Hugging Face Inference API shape)", OK["classify"],
                                         ClassifyRequest, secured=True)},
        "/generate": {"post": _operation("Continue a prompt (text-generation-inference shape); streamed with "
                                         "stream=true", generate, TgiRequest, stream=EVENTS["tgi"], secured=True)},
        "/generate_stream": {"post": _operation("Continue a prompt, token events as SSE (TGI)", None, TgiRequest,
                                                stream=EVENTS["tgi"], secured=True)},
        "/v1/completions": {"post": _operation("OpenAI-compatible completion, streamed with stream=true",
                                               OK["completion"], CompletionRequest, stream=EVENTS["completion"],
                                               secured=True)},
        "/v1/chat/completions": {"post": _operation("OpenAI-compatible chat, through the model's chat template; "
                                                    "streamed with stream=true", OK["chat"], ChatRequest,
                                                    stream=EVENTS["chat"], secured=True)},
        "/v1/models": {"get": _operation("Generators, in OpenAI's list shape", OK["openai_models"])},
        "/info": {"get": {**_operation("A model's limits: TGI's shape for a generator, TEI's for a classifier "
                                       "(?model=NAME; default: the default generator)", OK["info"], secured=True),
                          "parameters": [{"name": "model", "in": "query", "required": False,
                                          "schema": {"type": "string"}, "description": "a model's name"}]}},
        "/tokenize": {"post": _operation("Tokens with their offsets (TGI's and TEI's /tokenize)", OK["tokenize"],
                                         TOKENIZE_REQUEST, secured=True)},
        "/predict": {"post": _operation("TEI's classification route: /classify with `truncate` and `raw_scores`",
                                        OK["predict"], PREDICT_REQUEST, secured=True)},
        "/models": {"get": _operation("Every model: those up (status ready), then those that failed to load, "
                                      "with their error", OK["models"])},
        "/models/{name}": {"get": _operation("One model", OK["model"], errors=(404, 503))},
        "/models/{name}/card": {"get": _operation("A model card: markdown and its YAML metadata", OK["card"],
                                                  errors=(404, 503))},
        "/models/{name}/files/{file}": {"get": _operation("A picture the card shows: training_curves.png, "
                                                          "confusion_matrix.png", BYTES, errors=(404, 503),
                                                          media="image/png")},
        "/": {"get": _operation("The writers' page: pick a model, generate (streamed) and classify in a browser",
                                TEXT, media="text/html"),
              "post": _operation("TGI's route: /generate, or /generate_stream with stream=true", generate, TgiRequest,
                                 stream=EVENTS["tgi"], secured=True)},
        "/health": {"get": _operation("The process is up", OK["health"])},
        "/ready": {"get": _operation("Ready for traffic: every default model and a model of each kind found are up "
                                     "(every model, with require_all_models); 503 not_ready while loading, "
                                     "load_failed, or shutting_down", OK["ready"], errors=(503,))},
        "/admin/reload": {"post": _operation("Publish new, changed and removed model directories (admin key)",
                                             OK["reload"], secured=True)},
        "/metrics": {"get": _operation("Prometheus metrics, in their text format", TEXT, media=CONTENT_TYPE_LATEST)},
        "/openapi.json": {"get": _operation("This document", OK["document"])},
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
    # textsvc's routes answer `Error`, TGI's (/, /generate, /generate_stream, /predict) `TgiError`, /v1 `OpenAIError`
    return {"Error": native, "TgiError": tgi, "OpenAIError": openai,
            "ErrorCode": {"type": "string", "enum": [code.value for code in codes],
                          "description": "; ".join(f"{code.value} ({code.http_status or 'its own status'}): "
                                                   f"{code.meaning}" for code in codes)}}


ERROR_SCHEMAS = {"textsvc": "Error", "tgi": "TgiError", "openai": "OpenAIError"}


def _add_errors(path: str, method: str, operation: dict) -> None:
    """Each error status of `operation`: the error shape its route speaks, and the codes that answer it."""
    shape = {"$ref": f"#/components/schemas/{ERROR_SCHEMAS[error_style(path, method.upper())]}"}
    for status, response in operation["responses"].items():
        if status != "200":
            meanings = [f"{code.value}: {code.meaning}" for code in ErrorCode
                        if code.surface == HTTP and (code.http_status or 500) == int(status)]
            response.update(description="; ".join(meanings) or "an error", **_json(shape))
            if status in ("429", "503"):
                response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}


def openapi_document(config: ServingConfig | None = None) -> dict:
    """The whole document, with the caps of `config` (default: ServingConfig's defaults)."""
    config = config or ServingConfig()
    caps, routes = served_bounds(config.max_new_tokens_limit), paths()
    schemas = {body["title"]: body for body in (TOKENIZE_REQUEST, PREDICT_REQUEST)}
    for path, route in routes.items():
        for method, operation in route.items():
            _add_errors(path, method, operation)
            if names := re.findall(r"{(\w+)}", path):
                operation.setdefault("parameters", []).extend(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names)
            if "requestBody" in operation:  # a dataclass of requests.py or chat_requests.py, or one of the above
                name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                if name in BODIES:
                    schemas.update(object_schemas(BODIES[name], caps))
    return {"openapi": "3.1.0", "info": {"title": "textsvc", "version": __version__}, "paths": routes,
            "components": {"schemas": {**schemas, **error_schemas()},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
