"""The routes, a blueprint per area: operations (page, health, readiness, metrics, the OpenAPI document), the
models and their cards, and inference (textsvc's, TGI's and OpenAI's shapes). A view parses, calls the engine, and
answers JSON."""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST

from textsvc.errors import ErrorCode, RequestError
from textsvc.serving.engine import Engine
from textsvc.serving.http import client_gone, current_engine, error_response, event_stream, json_body
from textsvc.serving.openapi import openapi_document
from textsvc.serving.requests import (
    OPENAI_FINISH,
    completion_id,
    completion_response,
    parse_classify,
    parse_completion,
    parse_tgi,
    tgi_event,
    tgi_response,
)
from textsvc.serving.timing import finish, record_classification

PAGE_DIR = Path(__file__).parent / "static"

ops = Blueprint("ops", __name__)
models = Blueprint("models", __name__)
inference = Blueprint("inference", __name__)


@ops.get("/")
def page():
    """The writers' page (static/index.html): open like /health, as it holds no data; its calls carry the key."""
    response = send_from_directory(PAGE_DIR, "index.html")
    # the page is one file: nothing from elsewhere may load, and it calls this origin only
    response.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'unsafe-inline'; "
                                                   "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                                                   "frame-ancestors 'none'")
    return response


@ops.get("/health")
def health():
    return jsonify(status="ok")


@ops.get("/ready")
def ready():
    engine = current_engine()
    if engine.ready:
        return jsonify(status="ready", models=len(engine.models))
    failed = engine.load_error is not None
    message = f"loading failed: {engine.load_error}" if failed else "the models are still loading"
    return error_response(ErrorCode.LOAD_FAILED if failed else ErrorCode.NOT_READY, message)


@ops.get("/metrics")
def metrics():
    return Response(current_engine().telemetry.exposition(), mimetype=CONTENT_TYPE_LATEST)


@ops.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@models.get("/models")
def list_models():
    return jsonify(models=[served.describe() for served in current_engine().models.values()])


@models.get("/models/<name>")
def show_model(name: str):
    return jsonify(current_engine().model(name).describe())


@models.get("/models/<name>/card")
def show_card(name: str):
    return jsonify(current_engine().card(name))


CARD_PICTURES = ("training_curves.png", "confusion_matrix.png")  # what cards show; nothing else of a model dir


@models.get("/models/<name>/files/<file>")
def card_picture(name: str, file: str):
    """A picture a card shows (open like the card, so that the page's <img> needs no key)."""
    served = current_engine().model(name)
    if file not in CARD_PICTURES or not (served.path / file).is_file():
        raise RequestError(f"{name} has no {file}", code=ErrorCode.NOT_FOUND)
    return send_from_directory(served.path, file, mimetype="image/png")


@models.get("/v1/models")
def openai_models():
    generators = [name for name, served in current_engine().models.items() if served.kind == "generator"]
    return jsonify(object="list", data=[{"id": name, "object": "model", "created": 0, "owned_by": "textsvc"}
                                        for name in generators])


@inference.before_request
def require_api_key() -> None:
    keys = current_engine().config.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.encode(), key.encode()) for key in keys):
        raise RequestError("send a valid API key as 'Authorization: Bearer KEY'", code=ErrorCode.UNAUTHORIZED)


@inference.post("/classify")
def classify():
    engine = current_engine()
    arguments, submitted, timing = parse_classify(json_body(), engine.config).arguments, time.perf_counter(), {}
    scores = engine.classify(**arguments, timing=timing)
    record_classification(submitted, timing)
    return jsonify(scores)


@inference.post("/generate")
def generate():
    engine = current_engine()
    generation = parse_tgi(json_body(), engine.config, stream=False)
    if generation.stream:
        return _tgi_stream(engine, generation)
    sampling = dataclasses.replace(generation.sampling, logprobs=generation.details)  # only `details` lists them
    result = finish(engine.submit(generation.model, generation.prompt, sampling, **generation.options))
    return jsonify(tgi_response(generation, result))


@inference.post("/")
def tgi_compat():
    """TGI's POST /: /generate, or /generate_stream when the body asks to stream (huggingface_hub posts here)."""
    return generate()


@inference.post("/generate_stream")
def generate_stream():
    engine = current_engine()
    return _tgi_stream(engine, parse_tgi(json_body(), engine.config, stream=True))


def _tgi_stream(engine: Engine, generation) -> Response:
    sampling = dataclasses.replace(generation.sampling, logprobs=True)  # each TGI event carries a logprob
    job = engine.submit(generation.model, generation.prompt, sampling, client_gone(), **generation.options)
    return event_stream((tgi_event(generation, event, job.result) for event in job), job.cancel)


@inference.post("/v1/completions")
def completions():
    engine = current_engine()
    generation = parse_completion(json_body(), engine.config)
    ident = completion_id()
    name = engine.model(generation.model, "generator").name
    if not generation.stream:
        result = finish(engine.submit(name, generation.prompt, generation.sampling, **generation.options))
        return jsonify(completion_response(name, result, result.text, ident, OPENAI_FINISH[result.finish_reason]))
    job = engine.submit(name, generation.prompt, generation.sampling, client_gone(), **generation.options)

    def chunks() -> Iterator[dict]:
        for event in job:
            if event.text:
                yield completion_response(name, None, event.text, ident, None)
        if job.result is not None:  # None when the client went away
            yield completion_response(name, job.result, "", ident, OPENAI_FINISH[job.result.finish_reason])

    return event_stream(chunks(), job.cancel, done="[DONE]")
