"""Load generation for scripts/bench_serving.py: closed-loop clients and open-loop Poisson arrivals over HTTP,
with the latency figures of vLLM's `benchmark_serving.py` (TTFT, TPOT, ITL, end-to-end latency).

Closed loop: N clients, each sending its next request when the last one is answered. Open loop: requests arrive
at exponentially spaced times (a Poisson process at `rate` per second) whatever the server's state, each on its
own thread. Both stop after a fixed number of requests, so a run is bounded in count and time.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """One request as the client saw it: seconds to the first piece and between pieces, tokens out, errors."""

    latency_s: float
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)  # inter-token latencies, one per piece after the first
    output_tokens: int = 0
    texts: int = 0  # texts classified by the request
    error: str | None = None
    status: int | None = None  # the HTTP status; None when no answer came (a refused or broken connection)
    retry_after: str | None = None  # the Retry-After header of a refusal


# Each client thread keeps one connection per server and reuses it, as an app's HTTP session does (requests.Session;
# vLLM's benchmark_serving.py one aiohttp session). A new connection per request added about 0.25 ms to each of a lone
# client's /health requests on the 2-core CPU (0.84-0.87 ms against 0.58-0.71 at the median of 200, three rounds);
# `KEEP_ALIVE = False` (bench_serving.py --new_connections) opens one per request, as urllib does.
KEEP_ALIVE = True
_kept = threading.local()
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)  # a kept connection the server closed


def request_bytes(url: str, body: bytes | None = None, timeout_s: float = 600.0) -> bytes:
    """The body of a GET (or of a JSON POST when `body` is given); raises urllib.error.HTTPError on an HTTP error
    status, as urllib does."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if not KEEP_ALIVE:
        request = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read()
    parts = urllib.parse.urlsplit(url)
    pool, key = _kept.__dict__.setdefault("pool", {}), parts.netloc
    while True:
        reused = key in pool
        connection = pool.pop(key, None) or http.client.HTTPConnection(parts.hostname, parts.port)
        connection.timeout = timeout_s
        if connection.sock is not None:
            connection.sock.settimeout(timeout_s)
        try:
            connection.request("POST" if body is not None else "GET", parts.path or "/", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except STALE:
            connection.close()
            if reused:  # the server had closed it while idle: once more on a new one
                continue
            raise
        except BaseException:
            connection.close()
            raise
        if not response.will_close:
            pool[key] = connection
        else:
            connection.close()
        if response.status >= 400:
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, io.BytesIO(data))
        return data


def post_json(url: str, body: dict, timeout_s: float = 600.0) -> dict:
    """POST a JSON body and return the decoded JSON answer (raises on HTTP errors)."""
    return json.loads(request_bytes(url, json.dumps(body).encode(), timeout_s))


def failed(started: float, error: Exception) -> Outcome:
    """A failed request's outcome: a figure too, not the end of the run; an HTTP refusal keeps its status."""
    status = error.code if isinstance(error, urllib.error.HTTPError) else None
    retry_after = error.headers.get("Retry-After") if isinstance(error, urllib.error.HTTPError) else None
    return Outcome(time.perf_counter() - started, error=repr(error), status=status, retry_after=retry_after)


def classify_once(url: str, texts: list[str], timeout_s: float = 600.0) -> Outcome:
    """One /classify request (textsvc's shape); its latency."""
    started = time.perf_counter()
    try:
        post_json(url, {"inputs": texts if len(texts) > 1 else texts[0]}, timeout_s)
    except Exception as error:
        return failed(started, error)
    return Outcome(time.perf_counter() - started, texts=len(texts), status=200)


def get_once(url: str) -> Outcome:
    """One GET (the no-op route: what HTTP alone costs); its latency."""
    started = time.perf_counter()
    try:
        request_bytes(url, timeout_s=60)
    except Exception as error:
        return failed(started, error)
    return Outcome(time.perf_counter() - started, status=200)


def stream_completion(url: str, body: dict, hang_up_after: int | None = None) -> Outcome:
    """One streamed OpenAI `/v1/completions` request; the arrival time of every content piece. With
    `hang_up_after`, the client disconnects after that many pieces (what a closed browser tab does)."""
    started = time.perf_counter()
    arrivals, usage = [], None
    request = urllib.request.Request(url, data=json.dumps({**body, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            for raw in response:
                line = raw.decode().strip()
                if line.startswith("data:") and line != "data: [DONE]":
                    chunk = json.loads(line[5:])
                    if "error" in chunk:  # an error after the stream began: its last event
                        raise RuntimeError(f"stream error event: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    if any(choice.get("text") for choice in chunk.get("choices") or ()):
                        arrivals.append(time.perf_counter())
                if hang_up_after is not None and len(arrivals) >= hang_up_after:
                    break
    except Exception as error:
        return failed(started, error)
    latency = time.perf_counter() - started
    tokens = (usage or {}).get("completion_tokens") or len(arrivals)
    if not arrivals:
        return Outcome(latency, output_tokens=tokens, status=200)
    return Outcome(latency, ttft_s=arrivals[0] - started, gaps_s=[b - a for a, b in zip(arrivals, arrivals[1:])],
                   output_tokens=tokens, status=200)


def closed_loop(send: Callable[[int], Outcome], clients: int, requests: int, stop_after_s: float | None = None
                ) -> tuple[list[Outcome], float]:
    """`clients` threads share `requests` requests, each sending the next when answered (and none after
    `stop_after_s`, when given); outcomes and wall time."""
    counter, lock, outcomes = iter(range(requests)), threading.Lock(), []
    deadline = time.perf_counter() + stop_after_s if stop_after_s is not None else float("inf")

    def client() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None or time.perf_counter() > deadline:
                return
            outcome = send(index)
            with lock:
                outcomes.append(outcome)

    wall = _run_threads([threading.Thread(target=client) for _ in range(clients)])
    return outcomes, wall


def open_loop(send: Callable[[int], Outcome], rate_per_s: float, requests: int, seed: int = 0
              ) -> tuple[list[Outcome], float]:
    """`requests` requests arriving as a Poisson process of `rate_per_s`, each on its own thread, started at its
    arrival (so that only the requests in flight hold a thread, however long the run)."""
    rng, outcomes, lock, threads = random.Random(seed), [], threading.Lock(), []

    def one(index: int) -> None:
        outcome = send(index)
        with lock:
            outcomes.append(outcome)

    started = arrival = time.perf_counter()
    for index in range(requests):
        arrival += rng.expovariate(rate_per_s)
        time.sleep(max(0.0, arrival - time.perf_counter()))
        threads.append(threading.Thread(target=one, args=(index,)))
        threads[-1].start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def _run_threads(threads: list[threading.Thread]) -> float:
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float | None:
    """The `share` quantile (0..1) by linear interpolation, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(outcomes: list[Outcome], wall_s: float) -> dict:
    """Throughput and p50/p90/p99 of latency, TTFT, TPOT and ITL over one run's successful requests."""
    good = [o for o in outcomes if o.error is None]
    tpots = [(o.latency_s - o.ttft_s) / (o.output_tokens - 1) for o in good if o.ttft_s and o.output_tokens > 1]
    figures = {"requests": len(outcomes), "errors": len(outcomes) - len(good), "wall_s": wall_s,
               "requests_per_s": len(good) / wall_s, "texts_per_s": sum(o.texts for o in good) / wall_s,
               "output_tokens_per_s": sum(o.output_tokens for o in good) / wall_s}
    series = {"latency_s": [o.latency_s for o in good], "ttft_s": [o.ttft_s for o in good if o.ttft_s is not None],
              "tpot_s": tpots, "itl_s": [gap for o in good for gap in o.gaps_s]}
    for name, values in series.items():
        for share in (0.5, 0.9, 0.99):
            figures[f"{name}_p{round(share * 100)}"] = percentile(values, share)
    return figures


def median_of(rounds: list[dict]) -> dict:
    """Each figure's median over repeated rounds (None where a round had no value)."""
    keys = rounds[0].keys()
    out = {}
    for key in keys:
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out
