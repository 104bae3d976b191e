"""The figures of scripts/bench_serving.py as JSON, a markdown table with same-run ratios, and plots."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import bench_load as load


def medians(rounds: list[dict]) -> dict:
    """Every measurement's figures as medians over the rounds that have it."""
    names = {name for figures in rounds for name in figures}
    return {name: load.median_of([r[name] for r in rounds if name in r]) for name in sorted(names)}


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}{unit}" if value >= 10 else f"{value:.3g}{unit}"


def classify_rows(m: dict, levels: list[int]) -> list[str]:
    """Markdown rows of the /classify figures, each beside its same-run baseline."""
    get = lambda name, key: (m.get(name) or {}).get(key)  # noqa: E731
    pipe, pipe_bf16, onnx, onnx_int8 = (get(name, "texts_per_s") for name in
                                        ("pipeline_1", "pipeline_1_bfloat16", "onnx_1", "onnx_int8_1"))
    lone = get(f"textsvc_classify_c{levels[0]}", "latency_s_p50")
    rows = []
    for clients in levels:
        name = f"textsvc_classify_c{clients}"
        rate = get(name, "texts_per_s")
        rows.append(f"| /classify, {clients} client(s), 1 text each | {fmt(rate)} texts/s, p50 "
                    f"{fmt(get(name, 'latency_s_p50'), ' s')}, p99 {fmt(get(name, 'latency_s_p99'), ' s')} "
                    f"| pipeline 1 at a time {fmt(pipe)}, bf16 {fmt(pipe_bf16)}; ONNX Runtime 1 at a time "
                    f"{fmt(onnx)}, int8 {fmt(onnx_int8)} | {ratio(rate, pipe)} pipeline, {ratio(rate, pipe_bf16)} "
                    f"pipeline bf16, {ratio(rate, onnx)} ONNX, "
                    f"{ratio(rate, onnx_int8)} ONNX int8; p99 / lone p50 "
                    f"{ratio(get(name, 'latency_s_p99'), lone)} |")
    poisson = m.get("textsvc_classify_poisson") or {}
    rows.append(f"| /classify, Poisson arrivals | {fmt(poisson.get('texts_per_s'))} texts/s, p50 "
                f"{fmt(poisson.get('latency_s_p50'), ' s')}, p99 {fmt(poisson.get('latency_s_p99'), ' s')} | | |")
    top = f"textsvc_classify_c{levels[-1]}"
    raw_sorted, raw, raw_bf16 = (get(name, "texts_per_s") for name in
                                 ("raw_forward_32_sorted", "raw_forward_32", "raw_forward_32_sorted_bfloat16"))
    rows.append(f"| ceiling: raw forward, batch 32 | float32 sorted by length {fmt(raw_sorted)}, unsorted {fmt(raw)}; "
                f"bf16 sorted {fmt(raw_bf16)} texts/s | | textsvc at {levels[-1]} clients: "
                f"{ratio(get(top, 'texts_per_s'), raw_sorted)} of float32 sorted, "
                f"{ratio(get(top, 'texts_per_s'), raw_bf16)} of bf16 |")
    shared, shared_int8 = get("onnx_shared_32", "texts_per_s"), get("onnx_int8_shared_32", "texts_per_s")
    if shared:
        rows.append(f"| ceiling: textsvc's ONNX Runtime passes without HTTP, 32 texts shared among single-threaded "
                    f"callers | float32 {fmt(shared)}, int8 {fmt(shared_int8)} texts/s | | textsvc at {levels[-1]} "
                    f"clients: {ratio(get(top, 'texts_per_s'), shared)} of float32, "
                    f"{ratio(get(top, 'texts_per_s'), shared_int8)} of int8 |")
    noop = get("noop_route", "requests_per_s")
    rows.append(f"| no-op route (/health), {levels[-1]} clients | {fmt(noop)} requests/s | | /classify at "
                f"{levels[-1]} clients: {ratio(get(top, 'requests_per_s'), noop)} of it |")
    return rows


def generate_rows(m: dict, levels: list[int]) -> list[str]:
    """Markdown rows of the streaming figures, each beside its same-run baseline."""
    get = lambda name, key="output_tokens_per_s": (m.get(name) or {}).get(key)  # noqa: E731
    if not levels:
        return []
    one = get(f"textsvc_streams_{levels[0]}")
    rows = []
    for streams in levels:
        name = f"textsvc_streams_{streams}"
        rate, server = get(name), get(f"llama_server_streams_{streams}")
        server_ttft = get(f"llama_server_streams_{streams}", "ttft_s_p50")
        peers = [f"llama-server {fmt(server)} (TTFT p50 {fmt(server_ttft, ' s')})"]
        if streams == 1:
            peers += [f"generate() b1 fp32 {fmt(get('generate_b1_float32'))}, bf16 {fmt(get('generate_b1_bfloat16'))}",
                      f"llama-cpp-python {fmt(get('llama_cpp_b1'))}"]
            ratios = (f"{ratio(rate, get('generate_b1_bfloat16'))} generate() bf16, "
                      f"{ratio(rate, get('llama_cpp_b1'))} llama.cpp, {ratio(rate, server)} llama-server")
        else:
            peers.append(f"generate() b{streams} fp32 {fmt(get(f'generate_b{streams}_float32'))}, "
                         f"bf16 {fmt(get(f'generate_b{streams}_bfloat16'))}")
            ratios = f"{ratio(rate, one)} one stream, {ratio(rate, server)} llama-server"
        rows.append(f"| streamed /v1/completions, {streams} stream(s) | {fmt(rate)} tokens/s, TTFT p50 "
                    f"{fmt(get(name, 'ttft_s_p50'), ' s')}, ITL p50 {fmt(get(name, 'itl_s_p50'), ' s')}, p99 "
                    f"{fmt(get(name, 'itl_s_p99'), ' s')} | {'; '.join(peers)} | {ratios} |")
    return rows


def classify_levels(args) -> list[int]:
    """The /classify client counts measured (none when `--classify_clients` is '')."""
    return [int(clients) for clients in args.classify_clients.split(",") if clients]


def stream_levels(args) -> list[int]:
    """The stream counts measured (none when `--streams` is '')."""
    return [int(streams) for streams in args.streams.split(",") if streams]


def markdown(rounds: list[dict], args) -> str:
    m = medians(rounds)
    clients = classify_levels(args)
    streams = stream_levels(args)
    memory = [r["textsvc_memory"]["rss_mib"] for r in rounds]
    lines = [f"# Serving benchmark ({platform.machine()}, {args.threads} threads per peer, medians of {len(rounds)} "
             "rounds)", "", f"Command: `python scripts/bench_serving.py {' '.join(args.argv)}`", "",
             "| measurement | textsvc | peers in the same run | ratio |", "|---|---|---|---|",
             *(classify_rows(m, clients) if clients else []),
             *generate_rows(m, streams), "",
             f"textsvc server RSS after each round: {', '.join(f'{v:,.0f}' for v in memory)} MiB; peak "
             f"{max(r['textsvc_memory']['peak_rss_mib'] for r in rounds):,.0f} MiB."]
    gpu = [r["textsvc_gpu_memory"]["used_mib"] for r in rounds if "textsvc_gpu_memory" in r]
    if gpu:
        lines.append(f"textsvc server GPU memory after each round (nvidia-smi): {', '.join(f'{v:,.0f}' for v in gpu)} "
                     "MiB.")
    elsewhere = [r["busy_cores_elsewhere"]["before_round"] for r in rounds if "busy_cores_elsewhere" in r]
    if elsewhere:
        lines.append("Cores other processes kept busy, sampled for 1 s before each round: "
                     f"{', '.join(f'{v:.2f}' for v in elsewhere)}.")
    if "llama_server_memory" in m:
        lines.append(f"llama-server peak RSS: {m['llama_server_memory']['peak_rss_mib']:,.0f} MiB.")
    return "\n".join(lines) + "\n"


def plot(rounds: list[dict], args, output_dir: Path) -> None:
    """Throughput against concurrency, and latency percentiles, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = medians(rounds)
    clients = classify_levels(args)
    streams = stream_levels(args)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(clients, [m[f"textsvc_classify_c{c}"]["texts_per_s"] for c in clients], "o-",
              label="textsvc /classify")
    for color, (name, label) in enumerate((("pipeline_1", "pipeline, 1 at a time"),
                                           ("pipeline_1_bfloat16", "pipeline bf16, 1 at a time"),
                                           ("onnx_1", "ONNX Runtime, 1 at a time"),
                                           ("onnx_int8_1", "ONNX Runtime int8, 1 at a time"),
                                           ("raw_forward_32_sorted", "raw forward, batch 32 sorted"),
                                           ("raw_forward_32_sorted_bfloat16", "raw forward bf16, batch 32 sorted"),
                                           ("onnx_shared_32", "textsvc's ONNX Runtime passes, no HTTP")), start=1):
        if name in m:
            left.axhline(m[name]["texts_per_s"], linestyle="--", label=label, color=f"C{color}")
    left.set(xlabel="concurrent clients", ylabel="texts/s", title="Classification", xscale="log")
    left.legend(fontsize=8)
    right.plot(streams, [m[f"textsvc_streams_{s}"]["output_tokens_per_s"] for s in streams], "o-", label="textsvc")
    if streams and f"llama_server_streams_{streams[0]}" in m:
        right.plot(streams, [m[f"llama_server_streams_{s}"]["output_tokens_per_s"] for s in streams], "s-",
                   label="llama-server")
    right.set(xlabel="concurrent streams", ylabel="output tokens/s", title="Streamed generation", xscale="log")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output_dir / "throughput.png", dpi=110)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(8, 4))
    names = [f"textsvc_classify_c{c}" for c in clients] + [f"textsvc_streams_{s}" for s in streams]
    for offset, share in enumerate(("p50", "p90", "p99")):
        values = [m[n].get(f"latency_s_{share}") or 0 for n in names]
        axis.bar([i + offset * 0.27 for i in range(len(names))], values, width=0.27, label=share)
    axis.set_xticks([i + 0.27 for i in range(len(names))], [n.replace("textsvc_", "") for n in names], fontsize=8)
    axis.set(ylabel="latency (s)", title="Request latency percentiles", yscale="log")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "latency.png", dpi=110)
    plt.close(figure)


def write_all(rounds: list[dict], args, output_dir: Path) -> None:
    """results.json (every round and the medians), results.md, throughput.png and latency.png."""
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "argv"}
    (output_dir / "results.json").write_text(json.dumps(
        {"settings": settings, "rounds": rounds, "medians": medians(rounds)}, indent=1) + "\n", encoding="utf-8")
    text = markdown(rounds, args)
    (output_dir / "results.md").write_text(text, encoding="utf-8")
    plot(rounds, args, output_dir)
    print(text)

