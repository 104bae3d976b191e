"""Continuous batching against one-request-at-a-time decoding, on the same model and requests, in one run.

Submits `--requests` generations at once to textsvc's GenerationWorker, first with one seat (the baseline: each
request waits for the one before it), then with `--batch_size` seats, and prints tokens per second, median and
95th-percentile latency, and median time to the first token, side by side with their ratios. Repeats each setting
`--repeats` times and reports medians (these machines are noisy).

    python scripts/benchmark_generation_batching.py --model_dir ~/.cache/textsvc/models/smollm2-135m
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from textsvc.config.sampling import SamplingConfig
from textsvc.devices import device_description
from textsvc.loading import load_generator
from textsvc.serving.compute import in_passing_thread
from textsvc.serving.generator_batching import GenerationWorker

PROMPTS = ["The history of the city begins", "Once upon a time, in a quiet village,", "The recipe needs",
           "In the first chapter of the book,", "The weather today is", "My favourite way to spend a Sunday is",
           "Scientists announced on Tuesday that", "The old lighthouse keeper said"]


def one_round(worker: GenerationWorker, count: int, max_new_tokens: int) -> dict:
    """Submit `count` requests at once; wall time, generated tokens, and per-request latencies."""
    latencies, first_tokens, tokens = [], [], []
    lock = threading.Lock()

    def run(index: int) -> None:
        started = time.perf_counter()
        config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95, seed=index)
        job = worker.submit(PROMPTS[index % len(PROMPTS)], config)
        first = None
        for _ in job:
            first = first or time.perf_counter() - started
        with lock:
            latencies.append(time.perf_counter() - started)
            first_tokens.append(first)
            tokens.append(len(job.result.token_ids))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"tokens_per_s": sum(tokens) / wall, "p50_s": statistics.median(latencies),
            "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
            "first_token_p50_s": statistics.median(first_tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="a generator's model directory")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # loaded on a thread that ends, as the server loads: a loader's libgomp team left alive beside the worker's
    # slows every step (textsvc.serving.compute)
    loaded = in_passing_thread(load_generator, args.model_dir, args.device)
    results = {}
    for label, seats in (("one at a time (baseline)", 1), (f"continuous batching, {args.batch_size} seats",
                                                            args.batch_size)):
        worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=seats, max_queue_size=10_000)
        one_round(worker, 2, 4)  # warm-up
        rounds = [one_round(worker, args.requests, args.max_new_tokens) for _ in range(args.repeats)]
        worker.close()
        results[label] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"\n{args.requests} concurrent requests, {args.max_new_tokens} new tokens each (temperature 0.8, top-p "
          f"0.95), {args.model_dir} on {device_description(loaded.device)}; medians of {args.repeats} rounds")
    print(f"{'setting':<36}{'tokens/s':>10}{'p50 s':>9}{'p95 s':>9}{'TTFT p50 s':>12}")
    for label, r in results.items():
        print(f"{label:<36}{r['tokens_per_s']:>10.1f}{r['p50_s']:>9.2f}{r['p95_s']:>9.2f}{r['first_token_p50_s']:>12.2f}")
    base, batched = results.values()
    print(f"{'ratio (batched / baseline)':<36}{batched['tokens_per_s'] / base['tokens_per_s']:>10.2f}"
          f"{batched['p50_s'] / base['p50_s']:>9.2f}{batched['p95_s'] / base['p95_s']:>9.2f}"
          f"{batched['first_token_p50_s'] / base['first_token_p50_s']:>12.2f}")


if __name__ == "__main__":
    main()
