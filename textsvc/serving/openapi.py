"""The service's OpenAPI 3.1 description, served at /openapi.json (written by hand: the routes are few)."""

from __future__ import annotations

from textsvc import __version__

ERROR_CODES = ("malformed_json", "unsupported_media_type", "invalid_type", "empty_input", "too_many_inputs",
               "input_too_long", "invalid_parameter", "unknown_model", "not_found", "method_not_allowed",
               "payload_too_large", "overloaded", "not_ready", "load_failed", "unauthorized", "internal_error")


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(summary: str, request: dict | None = None, stream: bool = False, secured: bool = False) -> dict:
    ok = {"content": {"text/event-stream": {"schema": {"type": "string"}}}} if stream else _json({"type": "object"})
    operation = {"summary": summary, "responses": {
        "200": {"description": "success", **ok},
        "default": {"description": "an error", **_json({"$ref": "#/components/schemas/Error"})}}}
    if request:
        operation["requestBody"] = {"required": True, **_json(request)}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def openapi_document() -> dict:
    """The whole document."""
    inputs = {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "model": {"type": "string"}, "parameters": {"type": "object"}}}
    tgi = {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"type": "string"}, "model": {"type": "string"}, "parameters": {"type": "object"},
        "stream": {"type": "boolean"}}}
    completion = {"type": "object", "required": ["prompt"], "properties": {
        "model": {"type": "string"}, "prompt": {"type": "string"}, "max_tokens": {"type": "integer"},
        "temperature": {"type": "number"}, "top_p": {"type": "number"}, "stop": {}, "seed": {"type": "integer"},
        "stream": {"type": "boolean"}}}
    paths = {
        "/classify": {"post": _operation("Classify texts (Hugging Face Inference API shape)", inputs, secured=True)},
        "/generate": {"post": _operation("Continue a prompt (text-generation-inference shape)", tgi, secured=True)},
        "/generate_stream": {"post": _operation("Continue a prompt, token events as SSE (TGI)", tgi, stream=True,
                                                secured=True)},
        "/v1/completions": {"post": _operation("OpenAI-compatible completion, streamed with stream=true",
                                               completion, secured=True)},
        "/v1/models": {"get": _operation("Generators, in OpenAI's list shape")},
        "/models": {"get": _operation("Every loaded model")},
        "/models/{name}": {"get": _operation("One model")},
        "/models/{name}/card": {"get": _operation("A model card: markdown and its YAML metadata")},
        "/": {"get": {"summary": "The writers' page: pick a model, generate (streamed) and classify in a browser",
                      "responses": {"200": {"description": "the page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}},
              "post": _operation("TGI's route: /generate, or /generate_stream with stream=true", tgi, secured=True)},
        "/health": {"get": _operation("The process is up")},
        "/ready": {"get": _operation("The models are loaded (503 until then)")},
        "/metrics": {"get": _operation("Prometheus metrics")},
    }
    code = {"type": "string", "enum": list(ERROR_CODES)}
    native = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": code, "message": {"type": "string"}, "field": {"type": "string"}}}}}
    tgi_error = {"type": "object", "required": ["error", "error_type", "code"], "properties": {
        "error": {"type": "string"}, "error_type": {"enum": ["validation", "overloaded", "generation", "unauthorized"]},
        "code": code, "field": {"type": "string"}}}
    openai_error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
                       "code": code}}}}
    # textsvc's routes answer `native`; TGI's routes (/, /generate, /generate_stream) `tgi_error`; /v1 `openai_error`
    error = {"oneOf": [native, tgi_error, openai_error]}
    return {"openapi": "3.1.0", "info": {"title": "textsvc", "version": __version__}, "paths": paths,
            "components": {"schemas": {"Error": error},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
