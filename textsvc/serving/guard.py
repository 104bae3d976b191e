"""What every inference request passes before any work is done: its key, the server not stopping, its client's
share of requests in flight, and its deadline; and what it leaves behind: one JSON log line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request

from textsvc.config.serving import ServingConfig, max_in_flight
from textsvc.errors import ErrorCode, RequestError
from textsvc.serving.auth import KeyRing, bearer_token
from textsvc.serving.lifecycle import Lifecycle

access_log = logging.getLogger("textsvc.access")


@dataclass
class Guard:
    """The keys (inference and admin, apart) and the lifecycle of one app."""

    inference_keys: KeyRing
    admin_keys: KeyRing
    lifecycle: Lifecycle


def install_guard(app: Flask, config: ServingConfig) -> Guard:
    """Build the app's Guard from `config` and keep it in `app.extensions`."""
    guard = Guard(KeyRing(config.api_keys, config.api_keys_file, "api_keys"),
                  KeyRing(config.admin_keys, config.admin_keys_file, "admin_keys"),
                  Lifecycle(config.retry_after_s, max_in_flight(config)))
    app.extensions["textsvc.guard"] = guard
    return guard


def current_guard() -> Guard:
    return current_app.extensions["textsvc.guard"]


def check_key(keys: KeyRing, scope: str, required: bool) -> str | None:
    """The id of the request's Bearer key if `keys` holds it; `unauthorized` (counted in /metrics) when keys are
    configured, or `required`, and it does not."""
    if not keys and not required:
        return None
    token = bearer_token(request.headers.get("Authorization", ""))
    key = keys.match(token) if token is not None else None
    if key is None:
        current_app.extensions["textsvc"].telemetry.auth_failures.labels(scope).inc()
        raise RequestError("send a valid API key as 'Authorization: Bearer KEY'", code=ErrorCode.UNAUTHORIZED)
    return key


def admit_inference() -> None:
    """The inference blueprint's before_request: key, shutdown, the key's concurrency, then the deadline."""
    if request.method == "OPTIONS":  # a browser's CORS preflight carries no key and does no work
        return
    guard, config = current_guard(), current_app.extensions["textsvc"].config
    key = check_key(guard.inference_keys, "inference", required=False)
    guard.lifecycle.enter(key, config.max_concurrent_per_key)
    current_app.extensions["textsvc"].telemetry.in_flight.inc()
    g.admitted_key, g.admitted = key, True
    g.deadline = time.monotonic() + config.request_timeout_s if config.request_timeout_s else None


def release_inference(response: Response) -> Response:
    """The inference blueprint's after_request: the request leaves the lifecycle when its response is closed (a
    stream's last event sent), and logs its line then."""
    if g.pop("admitted", False):
        lifecycle, key = current_guard().lifecycle, g.admitted_key
        gauge = current_app.extensions["textsvc"].telemetry.in_flight
        line, started, job = access_record(response), g.get("started", time.perf_counter()), g.get("job")

        def done() -> None:
            lifecycle.leave(key)
            gauge.dec()
            result = getattr(job, "result", None)  # a stream's result exists only now
            tokens = line["tokens"] if result is None else len(result.token_ids)
            access_log.info(json.dumps({**line, "tokens": tokens,
                                        "total_ms": round((time.perf_counter() - started) * 1000, 1)}))
        response.call_on_close(done)
    return response


def access_record(response: Response) -> dict:
    """The request's log line: route, status, model, timings and tokens; texts only with `log_texts`."""
    body, result = g.get("body"), g.get("result")
    record = {"route": request.url_rule.rule if request.url_rule else request.path, "method": request.method,
              "status": response.status_code, "model": body.get("model") if isinstance(body, dict) else None,
              "tokens": len(result.token_ids) if result is not None else None,
              "headers_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1)}
    if current_app.extensions["textsvc"].config.log_texts:
        record["body"] = body
    return record


def should_stop(client_gone: Callable[[], bool]) -> Callable[[], bool]:
    """The generation's stop signal: the client went away, or the request's deadline passed."""
    deadline = g.get("deadline")
    if deadline is None:
        return client_gone
    return lambda: client_gone() or time.monotonic() > deadline


def past_deadline() -> Callable[[], bool]:
    """Whether the request's deadline has passed, as a check that works after the request context is gone."""
    deadline = g.get("deadline")
    return lambda: deadline is not None and time.monotonic() > deadline


def deadline_error() -> RequestError:
    """`deadline_exceeded`, as a cancelled generation answers it."""
    return RequestError("the request ran past request_timeout_s; its generation was cancelled",
                        code=ErrorCode.DEADLINE_EXCEEDED)
