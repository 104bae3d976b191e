"""The timing headers of inference responses, as TGI and TEI send them: the views record a request's figures in
`g.timing`, and `add_timing_headers` (an after_request hook) writes them.

`x-compute-time` is the whole request in seconds (TGI's unit); `x-queue-time` (until the worker seated it) and
`x-inference-time` (from then to its end) are milliseconds. Streams get none: their headers leave before the work.
"""

from __future__ import annotations

import time

from flask import Response, g

from textsvc.generation.sequence import GenerationResult
from textsvc.serving.generator_batching import Job


def finish(job: Job) -> GenerationResult | None:
    """Run a queued generation to its end and record its timing for the headers; None when it was cancelled (its
    deadline passed, or its client went away)."""
    for _ in job:
        pass
    if job.result is None:
        return None
    ended = time.perf_counter()
    started = job.started or ended
    g.timing = {"queue_ms": (started - job.submitted) * 1000, "inference_ms": (ended - started) * 1000,
                "prompt_tokens": job.result.prompt_tokens, "generated_tokens": len(job.result.token_ids)}
    return job.result


def record_classification(submitted: float, timing: dict) -> None:
    """The timing of a classification: `timing` as Engine.classify filled it, `submitted` before the call."""
    ended = time.perf_counter()
    started = timing.get("started") or ended
    g.timing = {"queue_ms": max(started - submitted, 0.0) * 1000, "inference_ms": (ended - started) * 1000,
                "prompt_tokens": timing.get("tokens", 0), "generated_tokens": 0}


def add_timing_headers(response: Response) -> Response:
    """The recorded figures as x-* headers, on the responses of successful inference requests."""
    timing = g.pop("timing", None)
    if timing is None or response.status_code != 200:
        return response
    started = g.get("started", time.perf_counter())
    response.headers["x-compute-time"] = f"{time.perf_counter() - started:.6f}"
    response.headers["x-queue-time"] = str(round(timing["queue_ms"]))
    response.headers["x-inference-time"] = str(round(timing["inference_ms"]))
    response.headers["x-prompt-tokens"] = str(timing["prompt_tokens"])
    response.headers["x-generated-tokens"] = str(timing["generated_tokens"])
    return response
