"""Soak: a long run of mixed traffic, with clients that hang up mid-stream, must end with no unexpected error, no
request left in flight, and the server's memory flat.

Starts `textsvc serve` (default: the default models); `--clients` closed-loop clients each send, at random,
/classify, a non-streamed /generate, or a streamed /v1/completions, a third of which hang up after a few pieces.
After `--warmup_s` of the same traffic, runs `--duration_s` more; prints counts by kind and outcome, the unexpected
errors, the requests still in flight afterwards (/metrics), and RSS after the warm-up and at the end. Exits 1 on
any unexpected error, a request left in flight, or RSS growth of `--max_growth` (5%) or more.

    python scripts/soak_serving.py                     # the default models, 10 minutes
    python scripts/soak_serving.py --duration_s 60 --models_dir models
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.request
from collections import Counter

import bench_load as load
import serving_process

TEXTS = ["Shares of the chip maker rose after it raised its forecast for the year.",
         "The striker scored twice as the home side came back to win the cup final.",
         "A new telescope sent back its first pictures of a distant galaxy."]
PROMPTS = ["Once upon a time", "The capital of France is", "Here is a short poem about the sea:"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models_dir", default=str(serving_process.DEFAULT_MODELS))
    parser.add_argument("--duration_s", type=float, default=600.0)
    parser.add_argument("--warmup_s", type=float, default=60.0, help="traffic before the first RSS reading")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--max_growth", type=float, default=0.05, help="RSS growth allowed, as a share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve_flag", action="append", default=[], help="extra `textsvc serve` flag (repeat)")
    return parser.parse_args()


def mixed_sender(base: str, max_new_tokens: int, seed: int, kinds: Counter):
    """A `send(index)` for bench_load's loops that picks a request kind at random and counts it in `kinds`."""
    rng = random.Random(seed)

    def generate() -> load.Outcome:
        started = time.perf_counter()
        try:
            load.post_json(base + "/generate", {"inputs": rng.choice(PROMPTS),
                                                "parameters": {"max_new_tokens": max_new_tokens}}, 300)
        except Exception as error:
            return load.failed(started, error)
        return load.Outcome(time.perf_counter() - started, status=200)

    def send(index: int) -> load.Outcome:
        kind = rng.choice(["classify", "generate", "stream", "hang_up"])
        kinds[kind] += 1
        if kind == "classify":
            return load.classify_once(base + "/classify", rng.sample(TEXTS, rng.randint(1, 3)), 300)
        if kind == "generate":
            return generate()
        body = {"prompt": rng.choice(PROMPTS), "max_tokens": max_new_tokens}
        return load.stream_completion(base + "/v1/completions", body,
                                      hang_up_after=rng.randint(1, 4) if kind == "hang_up" else None)
    return send


def in_flight(base: str) -> float:
    """textsvc_requests_in_flight, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "textsvc_requests_in_flight")


def main() -> None:
    args = parse_args()
    base, process = serving_process.start_textsvc(
        args.models_dir, [flag for pair in args.serve_flag for flag in pair.split(" ", 1)])
    kinds, endless = Counter(), 10**9  # the loops end by time
    send = mixed_sender(base, args.max_new_tokens, args.seed, kinds)
    try:
        load.closed_loop(send, args.clients, endless, stop_after_s=args.warmup_s)
        start_rss = serving_process.memory_mib(process.pid)["rss_mib"]
        kinds.clear()
        outcomes, wall = load.closed_loop(send, args.clients, endless, stop_after_s=args.duration_s)
        time.sleep(2)  # the last hung-up streams' seats are freed at the next decoding step
        end_rss, left = serving_process.memory_mib(process.pid)["rss_mib"], in_flight(base)
    finally:
        serving_process.stop(process)
    errors = Counter(o.error.split(":")[0][:80] for o in outcomes if o.error)
    report = {**load.summarize(outcomes, wall), "by_kind": dict(kinds), "unexpected_errors": sum(errors.values()),
              "error_kinds": dict(errors), "in_flight_after": left, "rss_after_warmup_mib": round(start_rss, 1),
              "rss_end_mib": round(end_rss, 1), "rss_growth": round(end_rss / start_rss - 1, 4)}
    print(json.dumps(report, indent=1))
    problems = [report["unexpected_errors"] and "unexpected errors", left and "requests left in flight",
                report["rss_growth"] >= args.max_growth and "RSS grew"]
    problems = [problem for problem in problems if problem]
    print("OK" if not problems else "FAILED: " + "; ".join(problems))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
