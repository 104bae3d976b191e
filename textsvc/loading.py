"""Load a model directory once, classifier or generator, on its device with its tokenizer (safetensors only)."""

from __future__ import annotations

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
from textsvc.devices import pick_device
from textsvc.modeldir import check_model_dir, read_json
from textsvc.models.lstm import LSTMForCausalLM
from textsvc.tokenization import load_tokenizer

DEFAULT_EVAL_BLOCK = 1024  # evaluation window for a model whose training block size is not recorded


@dataclass
class LoadedClassifier:
    """A classifier in eval mode on its device, with its tokenizer and input limit."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_length: int

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]


def load_classifier(model_dir: str | Path, device: str | None = None) -> LoadedClassifier:
    """Load weights (safetensors only, no remote code) and tokenizer from a model directory."""
    path = check_model_dir(model_dir)
    target = pick_device(device)
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    model.to(target).eval()
    tokenizer = load_tokenizer(str(path))
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    return LoadedClassifier(model, tokenizer, target, int(min(limit, tokenizer.model_max_length)))


@torch.inference_mode()
def classify_logits(classifier: LoadedClassifier, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, num_labels) float32 logits on the CPU, texts truncated to the model's input limit."""
    outputs = []
    for start in range(0, len(texts), batch_size):
        encoded = classifier.tokenizer(texts[start:start + batch_size], truncation=True,
                                       max_length=classifier.max_length, padding=True, return_tensors="pt")
        encoded = {name: tensor.to(classifier.device) for name, tensor in encoded.items()
                   if name in classifier.tokenizer.model_input_names}
        outputs.append(classifier.model(**encoded).logits.float().cpu())  # (b, num_labels)
    return torch.cat(outputs)


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


def load_generator(model_dir: str | Path, device: str | None = None) -> LoadedGenerator:
    """Load weights (safetensors only, no remote code) and tokenizer from a model directory."""
    path = check_model_dir(model_dir)
    target = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    model.to(target).eval()
    info = read_json(path / "training_info.json") or {}
    block = (info.get("hyperparameters") or {}).get("block_size")
    limit = context_length(model)
    block = block or min(limit or DEFAULT_EVAL_BLOCK, DEFAULT_EVAL_BLOCK)
    return LoadedGenerator(model, load_tokenizer(str(path)), target, int(block))


def context_length(model: PreTrainedModel) -> int | None:
    """Positions a model can attend to; None for the LSTM, whose state carries any length."""
    if isinstance(model, LSTMForCausalLM):
        return None
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
