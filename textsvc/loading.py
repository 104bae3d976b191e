"""Load a model directory once, classifier or generator, on its device with its tokenizer (safetensors only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.devices import pick_device, pick_dtype
from textsvc.errors import ConfigError
from textsvc.modeldir import check_model_dir, read_json
from textsvc.models.lstm import LSTMForCausalLM
from textsvc.onnx_classifier import OnnxSession
from textsvc.quantization import calibration_ids, quantize_weight_only
from textsvc.tokenization import load_tokenizer

# torch passes pad their texts to a multiple of this many tokens. oneDNN compiles kernels per shape and keeps 1,024
# of them: over 600 batches of random shapes (MiniLM, bf16, 2-core CPU), exact lengths took 29 s and grew the process
# from 445 to 1,922 MiB, still rising; multiples of 16 took 23 s and stayed at 1,107 MiB from the third round on.
# (Capping oneDNN's cache or fixing glibc's mmap threshold bounded the memory too, but cost a third of the throughput
# of /classify at 32 clients.) ONNX Runtime compiles nothing per shape: its lone texts keep their lengths.
PAD_TO_MULTIPLE = 16
DEFAULT_EVAL_BLOCK = 1024  # evaluation window for a model whose training block size is not recorded


@dataclass
class LoadedClassifier:
    """A classifier in eval mode on its device, with its tokenizer and input limit."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_length: int
    session: OnnxSession | None = None  # ONNX Runtime on the export (or its int8 copy): when set, it runs every pass
    quantization: str = "none"  # "int8" when the session runs the export's int8 copy

    @property
    def backend(self) -> str:
        """What runs the passes: ONNX Runtime when the model has a session, lone texts and batches alike, else
        torch (why, with the figures: README, Backends and threads on the CPU)."""
        return "onnxruntime" if self.session is not None else "torch"

    @property
    def backends(self) -> dict[str, str]:
        """What runs a lone text and what runs a batch, as /models says."""
        return {"single_text": self.backend, "batches": self.backend}

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def encode(self, texts: list[str], truncation: bool = True) -> list[list[int]]:
        """Token ids per text, cut to the model's input limit unless `truncation` is off."""
        return self.tokenizer(texts, truncation=truncation, max_length=self.max_length if truncation else None,
                              verbose=False)["input_ids"]

    @torch.inference_mode()
    def logits(self, ids: list[list[int]]) -> torch.Tensor:
        """(B, num_labels) float32 logits on the CPU for token id rows: in torch one padded batch, in ONNX Runtime
        one pass per row."""
        if self.session is not None:
            # each text alone, at its own length: on both 2-core CPUs measured, ONNX Runtime made more texts/s one at
            # a time than in padded batches (MiniLM on a Xeon with AVX-512 BF16: 171 against 158 at batch 32; on an
            # AVX2-only EPYC, /classify at 32 clients went from 37.4 texts/s in padded batches to 48.6); a batch's
            # texts are shared among single-threaded callers (OnnxSession)
            return self.session.logits_each(ids)
        longest = max(len(row) for row in ids)
        longest = min(-(-longest // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE, max(longest, self.max_length))
        input_ids = torch.full((len(ids), longest), self.tokenizer.pad_token_id or 0, dtype=torch.long)  # (B, T)
        mask = torch.zeros_like(input_ids)
        for index, row in enumerate(ids):  # right padding, built here: `tokenizer.pad` costs more than small passes
            input_ids[index, :len(row)], mask[index, :len(row)] = torch.tensor(row), 1
        return self.model(input_ids=input_ids.to(self.device),
                          attention_mask=mask.to(self.device)).logits.float().cpu()  # (B, num_labels)


def _load_model(auto_class: type, model_dir: str | Path, device: str | None,
                dtype: str) -> tuple[Path, PreTrainedModel, torch.device]:
    """A checked model directory, its weights (safetensors only, no remote code) in eval mode in `dtype` (see
    `devices.pick_dtype`), and their device."""
    path, target = check_model_dir(model_dir), pick_device(device)
    model = auto_class.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                       dtype=pick_dtype(dtype, target))
    return path, model.to(target).eval(), target


def load_classifier(model_dir: str | Path, device: str | None = None, dtype: str = "float32") -> LoadedClassifier:
    """Load weights (safetensors only, no remote code) and tokenizer from a model directory."""
    path, model, target = _load_model(AutoModelForSequenceClassification, model_dir, device, dtype)
    tokenizer = load_tokenizer(str(path))
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    return LoadedClassifier(model, tokenizer, target, int(min(limit, tokenizer.model_max_length)))


def classify_logits(classifier: LoadedClassifier, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """(N, num_labels) float32 logits on the CPU, `batch_size` texts per forward pass, each truncated to the model's
    input limit."""
    ids = classifier.encode(list(texts))  # a plain list: the tokenizer refuses other sequences (a datasets Column)
    return torch.cat([classifier.logits(ids[start:start + batch_size]) for start in range(0, len(ids), batch_size)])


@dataclass
class LoadedGenerator:
    """A causal LM in eval mode, its tokenizer, and the window its losses are measured over."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    block_size: int


def is_causal_lm_config(config) -> bool:
    """True when the config names a causal language model (`...ForCausalLM`, `...LMHeadModel`)."""
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in config.architectures or ())


def is_generator(model_dir: str | Path) -> bool:
    """Whether a model directory holds a text generator (rather than a classifier)."""
    return is_causal_lm_config(AutoConfig.from_pretrained(check_model_dir(model_dir)))


def load_generator(model_dir: str | Path, device: str | None = None, dtype: str = "float32",
                   quantize: str = "none", int8_activations: bool = False) -> LoadedGenerator:
    """Load weights (safetensors only, no remote code) and tokenizer from a model directory; `quantize` "int8" or
    "int4" rounds the linear layers' weights to that grid (`quantization`), and `int8_activations` makes their
    products above the packed kernels' rows W8A8 where the CPU has int8 instructions (for compiled decoding steps)."""
    path, model, target = _load_model(AutoModelForCausalLM, model_dir, device, dtype)
    tokenizer = load_tokenizer(str(path))
    limit = context_length(model)
    if quantize != "none":
        if target.type != "cpu":
            raise ConfigError(f"quantize: {quantize} runs on the CPU only (its packed kernel is a CPU kernel)",
                              field="quantize")
        w8a8 = int8_activations and not isinstance(model, LSTMForCausalLM)  # the LSTM's steps are never compiled
        quantize_weight_only(model, quantize, calibration_ids(tokenizer)[:, :limit] if w8a8 else None)
    info = read_json(path / "training_info.json") or {}
    block = (info.get("hyperparameters") or {}).get("block_size")
    block = block or min(limit or DEFAULT_EVAL_BLOCK, DEFAULT_EVAL_BLOCK)
    return LoadedGenerator(model, tokenizer, target, int(block))


def context_length(model: PreTrainedModel) -> int | None:
    """Positions a model can attend to; None for the LSTM, whose state carries any length."""
    if isinstance(model, LSTMForCausalLM):
        return None
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
