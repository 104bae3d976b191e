"""Where a stream's time goes: `textsvc serve` on one generator, closed-loop streams at each level, passed over
more than once, and the server's recompiles of its compiled decoding step (torch's `recompiles` log) listed.

The first pass pays for whatever the warm-up left uncompiled; later passes show the steady state. A gap between
them, or a recompile listed, is a compile that a client waited for. Figures as in scripts/bench_serving.py.

    python scripts/profile_streams.py --models_dir DIR --generator NAME --serve_flag=--compile_decoding

`--tiny` serves a tiny GPT trained on the spot instead: its steps are short enough on a CPU that the server's own
cost a token (HTTP, threads, the GIL) bounds it, as it bounds a GPU's graphed steps, so that path can be worked on
without a GPU:

    python scripts/profile_streams.py --tiny --streams 64 --max_new_tokens 32 --requests 256 --passes 3 \
        --in_process cpu --serve_flag="--max_generation_batch_size 64"

(the in-process worker seats as many streams as the highest level; the server, --max_generation_batch_size)
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import bench_load as load
import serving_process as serving

PROMPT_WORDS = ["the", "city", "council", "met", "on", "tuesday", "to", "discuss", "the", "new", "budget", "for",
                "schools", "roads", "and", "parks"]


def prompt(index: int) -> str:
    """The index-th prompt: 12 to 17 words, each prompt its own."""
    return " ".join(PROMPT_WORDS[index % 5:] + [str(index)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models_dir")
    parser.add_argument("--generator", help="the generator's folder name")
    parser.add_argument("--tiny", action="store_true", help="a tiny GPT trained now (2 x 64, a context of 128) "
                        "instead of --models_dir and --generator")
    parser.add_argument("--requests", type=int, help="requests at each level and pass (default: the level, at "
                        "least 4)")
    parser.add_argument("--streams", default="1,64", help="concurrent streams, each level in turn")
    parser.add_argument("--passes", type=int, default=2, help="times every level is run")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--serve_flag", action="append", default=[], help="extra `textsvc serve` flag (repeat)")
    parser.add_argument("--in_process", metavar="DEVICE", help="also the decoding worker alone on DEVICE (bfloat16 "
                        "on cuda), its streams drained by one thread: the engine without HTTP and its threads")
    parser.add_argument("--no_server", action="store_true", help="the in-process figures only")
    args = parser.parse_args()
    if args.tiny:
        args.models_dir = serving.train_tiny_models(Path(tempfile.mkdtemp(prefix="textsvc-tiny-")), gpt_hidden_size=64,
                                                    gpt_block_size=128)
        args.generator = "tiny-gpt"
    elif not (args.models_dir and args.generator):
        parser.error("give --models_dir and --generator, or --tiny")

    flags = [flag for pair in args.serve_flag for flag in pair.split(" ", 1)]
    if args.in_process:
        in_process(args, "--compile_decoding" in flags, "--cuda_graphs" in flags)
    if args.no_server:
        return
    started = time.perf_counter()
    base, server = serving.start_textsvc(args.models_dir, flags, env={"TORCH_LOGS": "recompiles"})
    log = Path(tempfile.gettempdir()) / f"textsvc-serve-{base.rsplit(':', 1)[1]}.log"
    print(f"ready after {time.perf_counter() - started:.1f} s (loading and warm-up); flags: {' '.join(flags)}")
    body = {"model": args.generator, "max_tokens": args.max_new_tokens, "temperature": 0}
    print(f"{'pass':>4} {'streams':>7} {'tokens/s':>9} {'TTFT p50':>9} {'TTFT max':>9} {'ITL p50':>8} {'ITL p99':>8} "
          f"{'ITL max':>8} {'server CPU a token':>18} {'recompiles so far':>18}")
    try:
        for number in range(1, args.passes + 1):
            for streams in [int(level) for level in args.streams.split(",")]:
                send = lambda i: load.stream_completion(base + "/v1/completions",
                                                        {**body, "prompt": prompt(i)})
                used = serving.cpu_seconds(server.pid)
                outcomes, wall = load.closed_loop(send, streams, args.requests or max(streams, 4))
                used = serving.cpu_seconds(server.pid) - used
                figures = load.summarize(outcomes, wall)
                tokens = sum(outcome.output_tokens for outcome in outcomes)
                gaps = [gap for outcome in outcomes for gap in outcome.gaps_s]
                first = [outcome.ttft_s for outcome in outcomes if outcome.ttft_s is not None]
                print(f"{number:>4} {streams:>7} {figures['output_tokens_per_s']:>9.1f} "
                      f"{figures['ttft_s_p50']:>9.4f} {max(first):>9.4f} {figures['itl_s_p50']:>8.4f} "
                      f"{figures['itl_s_p99']:>8.4f} {max(gaps):>8.4f} {used / max(tokens, 1) * 1e6:>15.0f} us "
                      f"{recompiles(log):>18}", flush=True)
    finally:
        serving.stop(server)
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "[__recompiles]" in line:
            print(line.split("[__recompiles]", 1)[1].rstrip())


def in_process(args: argparse.Namespace, compiled: bool, graphs: bool) -> None:
    from textsvc.config.sampling import SamplingConfig
    from textsvc.loading import load_generator
    from textsvc.serving.compute import in_passing_thread
    from textsvc.serving.generator_batching import GenerationWorker

    levels = [int(level) for level in args.streams.split(",")]
    dtype = "bfloat16" if args.in_process.startswith("cuda") else "float32"
    # on a thread that ends, as the server loads (see textsvc.serving.compute)
    loaded = in_passing_thread(load_generator, Path(args.models_dir) / args.generator, args.in_process, dtype)
    worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=max(levels),
                              max_queue_size=2 * max(levels), compile_decoding=compiled, cuda_graphs=graphs)
    worker.warm_up()
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0)
    for number in range(1, args.passes + 1):
        for streams in levels:
            started = time.perf_counter()
            jobs = [worker.submit(prompt(i), config) for i in range(streams)]
            tokens = sum(1 for job in jobs for _ in job)  # one thread reads every stream in turn
            mode = ", CUDA graphs" if worker.graphs else ", compiled" if worker.compiled else ""
            print(f"in-process worker ({dtype}{mode}), pass {number}, {streams} streams: "
                  f"{tokens / (time.perf_counter() - started):.1f} tokens/s", flush=True)
    worker.close()


def recompiles(log: Path) -> int:
    return len(re.findall(r"Recompiling function", log.read_text(encoding="utf-8", errors="replace")))


if __name__ == "__main__":
    main()
