"""Load a model directory once and run batched predictions on the chosen device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.devices import pick_device
from textsvc.modeldir import check_model_dir
from textsvc.tokenization import load_tokenizer


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
