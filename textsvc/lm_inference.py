"""Load a generator's model directory once: the causal LM in eval mode on its device, with its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.devices import pick_device
from textsvc.modeldir import check_model_dir, read_json
from textsvc.sampling import context_length
from textsvc.tokenization import load_tokenizer

DEFAULT_EVAL_BLOCK = 1024  # evaluation window for a model whose training block size is not recorded


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
