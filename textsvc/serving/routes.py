"""The routes, a blueprint per area: operations (page, health, readiness, metrics, the OpenAPI document), the
models and their cards, and inference (textsvc's, TGI's and OpenAI's shapes). A view parses, calls the engine, and
answers JSON."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, g, jsonify, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST

from textsvc.errors import ErrorCode, RequestError, TextsvcError, error_body
from textsvc.serving.engine import Engine
from textsvc.serving.guard import (
    admit_inference,
    current_guard,
    deadline_error,
    past_deadline,
    release_inference,
    should_stop,
)
from textsvc.serving.http import client_gone, current_engine, event_stream, json_body
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
    """200 while the replica should get traffic (see `Engine.ready`); the models up and those that failed are
    listed whenever not all are up."""
    engine, stopping = current_engine(), current_guard().lifecycle.stopping
    models, failures = engine.models, engine.failures
    listing = {} if not failures else {"ready": list(models), "failed": list(failures.values())}
    if engine.ready and not stopping:
        return jsonify(status="ready", models=len(models), **listing)
    if stopping:
        code, message = ErrorCode.SHUTTING_DOWN, "the server is shutting down"
    elif not engine.loaded:
        code, message = ErrorCode.NOT_READY, "the models are still loading"
    else:
        error = engine.load_error
        code, message = ErrorCode.LOAD_FAILED, (f"{error.code}: {error.message}" if isinstance(error, TextsvcError)
                                                else "; ".join(engine.readiness_gaps()))
    body = {**error_body("textsvc", code, message), "status": str(code), "models": len(models),
            "ready": list(models), "failed": list(failures.values())}
    response = jsonify(body)
    response.status_code = code.http_status
    if stopping:
        response.headers["Retry-After"] = str(engine.config.retry_after_s)
    return response


@ops.get("/metrics")
def metrics():
    return Response(current_engine().telemetry.exposition(), content_type=CONTENT_TYPE_LATEST)  # mimetype: 2 charsets


@ops.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_engine().config))  # the caps of this server


@models.get("/models")
def list_models():
    """The models up (`status: ready`), then those that failed to load, with their error."""
    engine = current_engine()
    up = [{**served.describe(), "status": "ready"} for served in engine.models.values()]
    return jsonify(models=up + [failure for name, failure in engine.failures.items() if name not in engine.models])


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


inference.before_request(admit_inference)
inference.after_request(release_inference)


@inference.post("/classify")
def classify():
    engine = current_engine()
    arguments, submitted, timing = parse_classify(json_body(), engine.config).arguments, time.perf_counter(), {}
    scores = engine.classify(**arguments, deadline=g.get("deadline"), timing=timing)
    record_classification(submitted, timing)
    return jsonify(scores)


@inference.post("/generate")
def generate():
    engine = current_engine()
    generation = parse_tgi(json_body(), engine.config, stream=False)
    if generation.stream:
        return _tgi_stream(engine, generation)
    sampling = dataclasses.replace(generation.sampling, logprobs=generation.details)  # only `details` lists them
    result = finish(engine.submit(generation.model, generation.prompt, sampling, should_stop(client_gone()),
                                  **generation.options))
    if result is None:
        raise deadline_error()
    g.result = result
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
    g.job = job = engine.submit(generation.model, generation.prompt, sampling, should_stop(client_gone()),
                                **generation.options)
    return event_stream((tgi_event(generation, event, job.result) for event in until_deadline(job)), job.cancel,
                        waiting=job.waiting)


@inference.post("/v1/completions")
def completions():
    engine = current_engine()
    generation = parse_completion(json_body(), engine.config)
    ident = completion_id()
    name = engine.model(generation.model, "generator").name
    if not generation.stream:
        result = finish(engine.submit(name, generation.prompt, generation.sampling, should_stop(client_gone()),
                                      **generation.options))
        if result is None:
            raise deadline_error()
        g.result = result
        return jsonify(completion_response(name, result, result.text, ident, OPENAI_FINISH[result.finish_reason]))
    g.job = job = engine.submit(name, generation.prompt, generation.sampling, should_stop(client_gone()),
                                **generation.options)
    events = until_deadline(job)

    def chunks() -> Iterator[dict]:
        for event in events:
            if event.text:
                yield completion_response(name, None, event.text, ident, None)
        if job.result is not None:  # None when the client went away
            yield completion_response(name, job.result, "", ident, OPENAI_FINISH[job.result.finish_reason])

    return event_stream(chunks(), job.cancel, done="[DONE]", waiting=job.waiting)


def until_deadline(job) -> Iterator:
    """The job's events; a last `deadline_exceeded` when the deadline cancelled it (not when the client left)."""
    expired = past_deadline()  # read now: a stream's body runs after the request context is gone

    def events() -> Iterator:
        yield from job
        if job.result is None and expired():
            raise deadline_error()
    return events()
