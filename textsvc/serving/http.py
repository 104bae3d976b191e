"""What every route shares: the engine of the app, the JSON body, errors in the shape the route's clients parse,
and server-sent event streams."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator

from flask import Response, current_app, g, jsonify, request

from textsvc.errors import ErrorCode, RequestError, TextsvcError, error_body
from textsvc.serving.engine import Engine

log = logging.getLogger(__name__)
TGI_PATHS = ("/generate", "/generate_stream", "/predict")


def current_engine() -> Engine:
    return current_app.extensions["textsvc"]


def error_response(code: ErrorCode, message: str, field: str | None = None, status: int | None = None) -> Response:
    response = jsonify(error_body(api_style(), code, message, field, status))
    response.status_code = status or code.http_status
    return response


def api_style() -> str:
    """Whose error shape the request's route speaks (see `error_style`)."""
    return error_style(request.path, request.method)


def error_style(path: str, method: str) -> str:
    """Whose error shape a route speaks: TGI's on its routes (and TEI's /predict), OpenAI's under /v1, textsvc's
    elsewhere."""
    # TEI's /predict errors share TGI's shape: `{"error": message, "error_type"}`
    if path in TGI_PATHS or path == "/" and method == "POST":
        return "tgi"
    return "openai" if path.startswith("/v1/") else "textsvc"


def json_body() -> object:
    if request.mimetype != "application/json":
        raise RequestError("send the body as application/json", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    try:
        body = json.loads(request.get_data(cache=False))
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # refuses lone surrogates ("\ud800") tokenizers choke on
        g.body = body  # for the request's log line
        return body
    except (ValueError, RecursionError) as error:  # RecursionError: "[[[[..." nested past Python's stack
        raise RequestError(f"the body is not valid JSON: {error}", code=ErrorCode.MALFORMED_JSON) from error


def event_stream(events: Iterator[dict], release: Callable[[], None], done: str | None = None,
                 waiting: Callable[[], bool] = lambda: False) -> Response:
    """Server-sent events, one JSON object each; `release` runs once, however the stream ends.

    Events that are already waiting (`waiting()`) when one is ready go out in the same write: a stream that keeps up
    sends each token as it comes, and one that fell behind (many streams, fast decoding) catches up in fewer writes,
    each of which costs waitress a wake-up of its socket thread."""
    release, style = once(release), api_style()

    def lines() -> Iterator[str]:
        pending: list[str] = []
        try:
            try:
                for event in events:
                    pending.append(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
                    if not waiting():
                        yield "".join(pending)
                        pending.clear()
                if done:
                    pending.append(f"data: {done}\n\n")
            except TextsvcError as error:
                body = error_body(style, error.code, error.message, error.field)
                pending.append(f"data: {json.dumps(body, ensure_ascii=False)}\n\n")
            except Exception:  # the headers are gone: say so in the stream
                log.exception("generation failed mid-stream")
                body = error_body(style, ErrorCode.INTERNAL_ERROR, "generation failed")
                pending.append(f"data: {json.dumps(body)}\n\n")
            if pending:
                yield "".join(pending)
        finally:
            release()

    response = Response(lines(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                          "X-Accel-Buffering": "no"})
    response.call_on_close(release)  # also when the stream is dropped before its first event
    return response


def once(action: Callable[[], None]) -> Callable[[], None]:
    lock, done = threading.Lock(), []

    def run_once() -> None:
        with lock:
            if not done:
                done.append(True)
                action()
    return run_once


def client_gone() -> Callable[[], bool]:
    return request.environ.get("waitress.client_disconnected", lambda: False)
