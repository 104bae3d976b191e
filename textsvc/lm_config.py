"""Generator configuration: training data, model sizes and optimisation for language models, and sampling."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from textsvc.config import ARCHS, SCRATCH, OptimisationConfig, SourceConfig, coerce, require

GENERATOR_TOKENIZERS = ("bpe", "char")
BUDGET_SCHEDULE_TYPES = ("linear", "cosine", "constant", "constant_with_warmup")  # shapes that can follow a clock


@dataclass(frozen=True)
class TextDataConfig(SourceConfig):
    """Where a generator's text comes from: plain text files, a text column of jsonl/csv/parquet, or the hub.
    Without a validation file, the validation text is the last share of the training text, as nanoGPT splits it."""


@dataclass(frozen=True)
class GeneratorModelConfig:
    """A new LSTM or GPT-2-style decoder of the sizes below, or a pretrained causal LM (`model_name_or_path`)."""

    arch: str = "lstm"
    model_name_or_path: str | None = None  # transformer only; unset or "scratch" trains a new decoder
    base_model_name: str | None = None  # hub name for the card when model_name_or_path is a local copy
    tokenizer_type: str = "bpe"  # from-scratch models: byte-level BPE or characters, learnt from the training text
    vocab_size: int = 4096  # bpe only
    block_size: int = 256  # tokens per training example, and a new decoder's context length
    embedding_dim: int = 256  # lstm only (tied input/output embeddings)
    hidden_size: int = 256
    num_layers: int = 2
    num_attention_heads: int = 4  # new transformer only
    dropout: float = 0.1
    embedding_dropout: float = 0.1  # lstm only

    def __post_init__(self):
        require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                "applies to --arch transformer only (the LSTM is trained from scratch)")
        require(self.tokenizer_type in GENERATOR_TOKENIZERS, "tokenizer_type",
                f"must be one of {GENERATOR_TOKENIZERS}")
        for name in ("embedding_dim", "hidden_size", "num_layers", "num_attention_heads"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.block_size >= 2, "block_size", "must be at least 2")
        require(self.tokenizer_type != "bpe" or self.vocab_size >= 257, "vocab_size",
                "must be at least 257 (the 256 bytes and <|endoftext|>)")
        for name in ("dropout", "embedding_dropout"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads", "must divide hidden_size")

    @property
    def from_scratch(self) -> bool:
        return self.model_name_or_path in (None, SCRATCH)


@dataclass(frozen=True)
class GeneratorTrainingConfig(OptimisationConfig):
    """A generator's training run: the shared settings with language-model defaults, a wall-clock budget, and the
    card's samples."""

    num_train_epochs: float = 1.0
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    per_device_eval_batch_size: int = 32
    early_stopping_patience: int = 0  # evaluations without a lower validation loss before stopping; 0: off
    max_minutes: float | None = None  # wall-clock budget: training stops, then evaluates and saves as usual
    eval_steps: int | None = None  # evaluate and checkpoint every N steps (default: every epoch)
    sample_prompts: tuple[str, ...] | None = None  # the card's samples; default: "" and starts of validation lines
    sample_max_new_tokens: int = 100

    def __post_init__(self):
        super().__post_init__()
        require(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be positive")
        require(self.max_minutes is None or self.lr_scheduler_type in BUDGET_SCHEDULE_TYPES, "lr_scheduler_type",
                f"with max_minutes, one of {', '.join(BUDGET_SCHEDULE_TYPES)} (the schedule follows the clock)")
        require(self.sample_max_new_tokens > 0, "sample_max_new_tokens", "must be positive")
        require(self.eval_steps is None or self.eval_steps > 0, "eval_steps", "must be positive")


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is picked. `temperature = 0` is greedy; `top_k = 0` and `top_p = 1` are off.

    `stop` strings end the text where they first appear in the decoded output (they are not returned);
    the same `seed` and request give the same text; `logprobs` asks for each token's log-probability.
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # CTRL's penalty (Keskar et al. 2019); 1 is off
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self):
        if isinstance(self.stop, str):  # one stop string given bare
            object.__setattr__(self, "stop", (self.stop,))
        require(isinstance(self.stop, (list, tuple)) and all(isinstance(s, str) and s for s in self.stop),
                "stop", "must be a list of non-empty strings")
        hints = typing.get_type_hints(SamplingConfig)
        for field in dataclasses.fields(self):  # requests arrive as JSON: check types before comparing values
            object.__setattr__(self, field.name, coerce(getattr(self, field.name), field, hints[field.name]))
        require(self.max_new_tokens > 0, "max_new_tokens", "must be positive")
        require(0 <= self.temperature < float("inf"), "temperature", "must be >= 0 (0 is greedy)")
        require(self.top_k >= 0, "top_k", "must be >= 0 (0 is off)")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(0 < self.repetition_penalty < float("inf"), "repetition_penalty", "must be positive")
        require(len(self.stop) <= 16, "stop", "at most 16 stop strings")
        require(self.seed is None or 0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
