"""The HTTP service: `create_app(config)`, its routes, and JSON errors. The only module that imports Flask.

Every error is JSON with a stable `code`, in the shape its route's clients parse: `{"error": {"code", "message"
[, "field"]}}` on textsvc's routes, TGI's `{"error": message, "error_type", "code"}` on /generate and
/generate_stream, OpenAI's `{"error": {"message", "type", "param", "code"}}` under /v1. An error inside an event
stream, after the headers went out, is one last event of the same shape.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from textsvc.config.common import build_configs
from textsvc.config.serving import ServingConfig, serving_env_values
from textsvc.errors import ErrorCode, OverloadedError, RequestError, TextsvcError, error_body
from textsvc.serving.engine import Engine
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
from textsvc.serving.telemetry import Telemetry

log = logging.getLogger(__name__)
PAGE_DIR = Path(__file__).parent / "static"
# werkzeug's HTTP errors by status as textsvc's codes; any other status answers `http_error`
HTTP_CODES = {code.http_status: code for code in (ErrorCode.MALFORMED_JSON, ErrorCode.NOT_FOUND,
                                                  ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.PAYLOAD_TOO_LARGE,
                                                  ErrorCode.UNSUPPORTED_MEDIA_TYPE)}

ops = Blueprint("ops", __name__)
models = Blueprint("models", __name__)
inference = Blueprint("inference", __name__)


def create_app(config: ServingConfig | dict | None = None) -> Flask:
    """The service for `config` (a ServingConfig, or field values over the TEXTSVC_* environment)."""
    if not isinstance(config, ServingConfig):
        (config,) = build_configs({**serving_env_values(), **(config or {})}, ServingConfig)
    app = Flask(__name__, static_folder=None)  # the page is served by `page` alone, with its CSP header
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.json.sort_keys, app.json.ensure_ascii = False, False
    engine = Engine(config, Telemetry())
    app.extensions["textsvc"] = engine
    for blueprint in (ops, models, inference):
        app.register_blueprint(blueprint)
    app.register_error_handler(TextsvcError, _textsvc_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_start_timer)
    app.after_request(_count_request)
    if config.load_in_background:
        threading.Thread(target=_load_quietly, args=(engine,), name="textsvc-load", daemon=True).start()
    else:
        engine.load()
    return app


def _engine() -> Engine:
    return current_app.extensions["textsvc"]


def _load_quietly(engine: Engine) -> None:
    try:
        engine.load()
    except Exception:  # /ready reports it; the process stays up to say so
        log.exception("loading the models failed")


# --- errors and bookkeeping -----------------------------------------------------------------------------------

def _error(code: ErrorCode, message: str, field: str | None = None, status: int | None = None) -> Response:
    response = jsonify(error_body(_api_style(), code, message, field, status))
    response.status_code = status or code.http_status
    return response


def _api_style() -> str:
    """Whose error shape the route speaks: TGI's on its routes, OpenAI's under /v1, textsvc's elsewhere."""
    if request.path in ("/generate", "/generate_stream") or request.path == "/" and request.method == "POST":
        return "tgi"
    return "openai" if request.path.startswith("/v1/") else "textsvc"


def _textsvc_error(error: TextsvcError) -> Response:
    response = _error(error.code, error.message, error.field)
    if isinstance(error, OverloadedError):
        response.headers["Retry-After"] = str(error.retry_after_s)
    if error.code == ErrorCode.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(error: HTTPException) -> Response:
    code = HTTP_CODES.get(error.code, ErrorCode.HTTP_ERROR)
    response = _error(code, error.description or error.name, status=error.code or 500)
    if error.code == 405:
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error on %s", request.path)
    return _error(ErrorCode.INTERNAL_ERROR, "the service failed on this request; see its log")


def _start_timer() -> None:
    g.started = time.perf_counter()


def _count_request(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"  # bounded label values
    telemetry = _engine().telemetry
    telemetry.requests.labels(route, request.method, str(response.status_code)).inc()
    telemetry.latency.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
    return response


def _json_body() -> object:
    if request.mimetype != "application/json":
        raise RequestError("send the body as application/json", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    try:
        body = json.loads(request.get_data(cache=False))
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # refuses lone surrogates ("\ud800") tokenizers choke on
        return body
    except (ValueError, RecursionError) as error:  # RecursionError: "[[[[..." nested past Python's stack
        raise RequestError(f"the body is not valid JSON: {error}", code=ErrorCode.MALFORMED_JSON) from error


def _event_stream(events: Iterator[dict], release: Callable[[], None], done: str | None = None) -> Response:
    """Server-sent events, one JSON object each; `release` runs once, however the stream ends."""
    release, style = _once(release), _api_style()

    def lines() -> Iterator[str]:
        try:
            for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            if done:
                yield f"data: {done}\n\n"
        except TextsvcError as error:
            body = error_body(style, error.code, error.message, error.field)
            yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        except Exception:  # the headers are gone: say so in the stream
            log.exception("generation failed mid-stream")
            body = error_body(style, ErrorCode.INTERNAL_ERROR, "generation failed")
            yield f"data: {json.dumps(body)}\n\n"
        finally:
            release()

    response = Response(lines(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                          "X-Accel-Buffering": "no"})
    response.call_on_close(release)  # also when the stream is dropped before its first event
    return response


def _once(action: Callable[[], None]) -> Callable[[], None]:
    lock, done = threading.Lock(), []

    def run_once() -> None:
        with lock:
            if not done:
                done.append(True)
                action()
    return run_once


def _client_gone() -> Callable[[], bool]:
    return request.environ.get("waitress.client_disconnected", lambda: False)


# --- routes -------------------------------------------------------------------------------------------------

@ops.get("/")
def page():
    """The writers' page (textsvc/serving/static/index.html): open like /health, as it holds no data; calls carry the key."""
    response = send_from_directory(PAGE_DIR, "index.html")
    # the page is one file: nothing from elsewhere may load, and it calls this origin only
    response.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'unsafe-inline'; "
                                                   "style-src 'unsafe-inline'; connect-src 'self'; "
                                                   "frame-ancestors 'none'")
    return response


@ops.get("/health")
def health():
    return jsonify(status="ok")


@ops.get("/ready")
def ready():
    engine = _engine()
    if engine.ready:
        return jsonify(status="ready", models=len(engine.models))
    failed = engine.load_error is not None
    message = f"loading failed: {engine.load_error}" if failed else "the models are still loading"
    return _error(ErrorCode.LOAD_FAILED if failed else ErrorCode.NOT_READY, message)


@ops.get("/metrics")
def metrics():
    return Response(_engine().telemetry.exposition(), mimetype=CONTENT_TYPE_LATEST)


@ops.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@models.get("/models")
def list_models():
    return jsonify(models=[served.describe() for served in _engine().models.values()])


@models.get("/models/<name>")
def show_model(name: str):
    return jsonify(_engine().model(name).describe())


@models.get("/models/<name>/card")
def show_card(name: str):
    return jsonify(_engine().card(name))


@models.get("/v1/models")
def openai_models():
    return jsonify(object="list", data=[{"id": name, "object": "model", "created": 0, "owned_by": "textsvc"}
                                        for name, served in _engine().models.items() if served.kind == "generator"])


@inference.before_request
def require_api_key() -> None:
    keys = _engine().config.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.encode(), key.encode()) for key in keys):
        raise RequestError("send a valid API key as 'Authorization: Bearer KEY'", code=ErrorCode.UNAUTHORIZED)


@inference.post("/classify")
def classify():
    engine = _engine()
    return jsonify(engine.classify(**parse_classify(_json_body(), engine.config).arguments))


@inference.post("/generate")
def generate():
    engine = _engine()
    generation = parse_tgi(_json_body(), engine.config, stream=False)
    if generation.stream:
        return _tgi_stream(engine, generation)
    sampling = dataclasses.replace(generation.sampling, logprobs=generation.details)  # only `details` lists them
    result = engine.generate(generation.model, generation.prompt, sampling, **generation.options)
    return jsonify(tgi_response(generation, result))


@inference.post("/")
def tgi_compat():
    """TGI's POST /: /generate, or /generate_stream when the body asks to stream (huggingface_hub posts here)."""
    return generate()


@inference.post("/generate_stream")
def generate_stream():
    engine = _engine()
    return _tgi_stream(engine, parse_tgi(_json_body(), engine.config, stream=True))


def _tgi_stream(engine: Engine, generation) -> Response:
    sampling = dataclasses.replace(generation.sampling, logprobs=True)  # each TGI event carries a logprob
    job = engine.submit(generation.model, generation.prompt, sampling, _client_gone(), **generation.options)
    return _event_stream((tgi_event(generation, event, job.result) for event in job), job.cancel)


@inference.post("/v1/completions")
def completions():
    engine = _engine()
    generation = parse_completion(_json_body(), engine.config)
    ident = completion_id()
    name = engine.model(generation.model, "generator").name
    if not generation.stream:
        result = engine.generate(name, generation.prompt, generation.sampling, **generation.options)
        return jsonify(completion_response(name, result, result.text, ident, OPENAI_FINISH[result.finish_reason]))
    job = engine.submit(name, generation.prompt, generation.sampling, _client_gone(), **generation.options)

    def chunks() -> Iterator[dict]:
        for event in job:
            if event.text:
                yield completion_response(name, None, event.text, ident, None)
        if job.result is not None:  # None when the client went away
            yield completion_response(name, job.result, "", ident, OPENAI_FINISH[job.result.finish_reason])

    return _event_stream(chunks(), job.cancel, done="[DONE]")
