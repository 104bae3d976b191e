"""A classifier exported with `torch.onnx` and run by ONNX Runtime: the CPU's fastest measured path for classifiers.

On the 2-core CPU, all-MiniLM-L6-v2 classified one text at a time at 160 texts/s through ONNX Runtime against
110 to 160 in torch bf16 and 92 to 110 in torch float32 (scripts/bench_serving.py measures it again in every run).
The export is made once per weights file and kept under textsvc's home, keyed by the hash of the weights, the config
and the versions that made it; a file there is complete, as it appears in one rename.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

log = logging.getLogger(__name__)
INPUT_NAMES = ("input_ids", "attention_mask")  # what LoadedClassifier.logits feeds any classifier


def onnx_runtime_available() -> bool:
    """Whether ONNX Runtime and the exporter's packages are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def export_key(model_dir: Path) -> str:
    """The export's name: a hash of the weights, the config, and the torch and ONNX Runtime versions."""
    import onnxruntime

    digest = hashlib.sha256(f"{torch.__version__} {onnxruntime.__version__}".encode())
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()[:32]


def export_classifier(model: PreTrainedModel, path: Path) -> Path:
    """`model` as ONNX at `path` (made once: a file there is complete), batch and sequence axes dynamic."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = {"input_ids": torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}  # a padded row, as batches have
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with tempfile.TemporaryDirectory(dir=path.parent) as work:  # beside `path`: the rename stays on one disk
        draft = Path(work) / path.name
        with warnings.catch_warnings():  # the exporter warns about its own internals, which no user can act on
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (), str(draft), kwargs=sample, dynamo=True, external_data=False,
                              input_names=list(INPUT_NAMES), output_names=["logits"], verbose=False,
                              dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES})
        os.replace(draft, path)
    return path


def quantized_export(path: Path) -> Path:
    """An int8 copy of the export at `path`, beside it (made once: a file there is complete). ONNX Runtime's dynamic
    quantization: weights in int8 per tensor, activations quantized on the fly (its speed and accuracy cost: README,
    Backends and threads on the CPU)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_name("model.int8.onnx")
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        draft = Path(work) / target.name
        quantize_dynamic(str(path), str(draft), weight_type=QuantType.QInt8)
        os.replace(draft, target)
    return target


class OnnxSession:
    """ONNX Runtime over an exported classifier, running each text alone at its own length (`logits_each`).

    A lone text runs on `threads` threads. Several texts run alone too, at their own lengths, but shared among
    `threads` callers of a second, single-threaded session: splitting one small pass over the cores gains less than
    running passes side by side, at the cost of a second copy of the weights (the figures: README, Backends and
    threads on the CPU).
    """

    def __init__(self, path: Path, threads: int):
        self.threads = threads
        self.session = _inference_session(path, threads)
        self.solo = _inference_session(path, 1) if threads > 1 else self.session
        # the calling thread is one of the callers; these are the others
        self._helpers = ThreadPoolExecutor(threads - 1, thread_name_prefix="textsvc-onnx") if threads > 1 else None

    def logits_each(self, rows: list[list[int]]) -> torch.Tensor:
        """(B, num_labels) float32 logits of token id rows, each run alone at its own length."""
        if len(rows) == 1 or self._helpers is None:
            return torch.cat([_run_row(self.session, row) for row in rows])
        results: list[torch.Tensor | None] = [None] * len(rows)
        longest_first = iter(sorted(range(len(rows)), key=lambda i: -len(rows[i])))  # the last taken are the shortest
        lock = threading.Lock()

        def take_and_run() -> None:  # each caller takes the next row when it is free: the shares balance themselves
            while True:
                with lock:
                    index = next(longest_first, None)
                if index is None:
                    return
                results[index] = _run_row(self.solo, rows[index])

        helpers = [self._helpers.submit(take_and_run) for _ in range(min(self.threads, len(rows)) - 1)]
        take_and_run()
        for helper in helpers:
            helper.result()  # a helper's error is the pass's error
        return torch.cat(results)


def _inference_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_row(session, row: list[int]) -> torch.Tensor:
    """(1, num_labels) float32 logits of one token id row."""
    ids = np.asarray([row], dtype=np.int64)
    logits = session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    return torch.from_numpy(np.asarray(logits, dtype=np.float32))


def onnx_session(model: PreTrainedModel, model_dir: Path, cache_dir: Path, quantize: str = "none") -> OnnxSession:
    """A session over `model`'s export in `cache_dir` (exported first if missing), or over its int8 copy when
    `quantize` is "int8"; one thread per torch thread."""
    path = export_classifier(model, cache_dir / export_key(model_dir) / "model.onnx")
    return OnnxSession(quantized_export(path) if quantize == "int8" else path, torch.get_num_threads())
