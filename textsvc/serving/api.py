"""The HTTP service: `create_app(config)` builds the app, its routes (serving/routes.py), JSON error handling and
request metrics.

Every error is JSON with a stable `code`, in the shape its route's clients parse: `{"error": {"code", "message"
[, "field"]}}` on textsvc's routes, TGI's `{"error": message, "error_type", "code"}` on /generate and
/generate_stream, OpenAI's `{"error": {"message", "type", "param", "code"}}` under /v1. An error inside an event
stream, after the headers went out, is one last event of the same shape.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from textsvc.config.common import build_configs
from textsvc.config.serving import ServingConfig, serving_env_values
from textsvc.errors import ErrorCode, OverloadedError, TextsvcError
from textsvc.serving.admin import admin
from textsvc.serving.chat import chat
from textsvc.serving.compat import compat
from textsvc.serving.engine import Engine
from textsvc.serving.guard import install_guard
from textsvc.serving.http import current_engine, error_response
from textsvc.serving.routes import inference, models, ops
from textsvc.serving.telemetry import Telemetry
from textsvc.serving.timing import add_timing_headers

log = logging.getLogger(__name__)
# werkzeug's HTTP errors by status as textsvc's codes; any other status answers `http_error`
HTTP_CODES = {code.http_status: code for code in (ErrorCode.MALFORMED_JSON, ErrorCode.NOT_FOUND,
                                                  ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.PAYLOAD_TOO_LARGE,
                                                  ErrorCode.UNSUPPORTED_MEDIA_TYPE)}


def create_app(config: ServingConfig | dict | None = None) -> Flask:
    """The service for `config` (a ServingConfig, or field values over the TEXTSVC_* environment)."""
    if not isinstance(config, ServingConfig):
        (config,) = build_configs({**serving_env_values(), **(config or {})}, ServingConfig)
    app = Flask(__name__, static_folder=None)  # the page is served by `page` alone, with its CSP header
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.json.sort_keys, app.json.ensure_ascii = False, False
    engine = Engine(config, Telemetry())
    app.extensions["textsvc"] = engine
    install_guard(app, config)
    for blueprint in (ops, models, inference, chat, compat, admin):
        app.register_blueprint(blueprint)
    app.register_error_handler(TextsvcError, _textsvc_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.after_request(add_timing_headers)
    app.after_request(_allow_origin)
    if config.load_in_background:
        threading.Thread(target=_load_quietly, args=(engine,), name="textsvc-load", daemon=True).start()
    else:
        engine.load()
    return app


def _load_quietly(engine: Engine) -> None:
    try:
        engine.load()
    except Exception:  # /ready reports it; the process stays up to say so
        log.exception("loading the models failed")


# --- errors and bookkeeping -----------------------------------------------------------------------------------

def _textsvc_error(error: TextsvcError) -> Response:
    response = error_response(error.code, error.message, error.field)
    if isinstance(error, OverloadedError):
        response.headers["Retry-After"] = str(error.retry_after_s)
    if error.code == ErrorCode.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(error: HTTPException) -> Response:
    code = HTTP_CODES.get(error.code, ErrorCode.HTTP_ERROR)
    response = error_response(code, error.description or error.name, status=error.code or 500)
    if error.code == 405:
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error on %s", request.path)
    return error_response(ErrorCode.INTERNAL_ERROR, "the service failed on this request; see its log")


def _start_timer() -> None:
    g.started = time.perf_counter()


def _count_request(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"  # bounded label values
    telemetry = current_engine().telemetry
    telemetry.requests.labels(route, request.method, str(response.status_code)).inc()
    telemetry.latency.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
    return response


def _allow_origin(response: Response) -> Response:
    """CORS headers for a configured origin only (off by default)."""
    origins, origin = current_engine().config.cors_origins or (), request.headers.get("Origin")
    if origin and (origin in origins or "*" in origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.vary.add("Origin")
    return response
