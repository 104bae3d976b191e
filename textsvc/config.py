"""Configuration: frozen dataclasses per concern, filled from a config file and command-line flags.

Flags and config-file keys share the dataclass field names (which follow the Hugging Face example
scripts), so `--learning_rate 3e-4` and `learning_rate = 3e-4` in a TOML file mean the same thing.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textsvc.errors import ConfigError

ARCHS = ("lstm", "transformer")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCRATCH = "scratch"  # --model_name_or_path value asking for a transformer trained from scratch


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}", field=field)


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and which columns hold them."""

    dataset_name: str | None = None
    dataset_config_name: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    label_names: tuple[str, ...] | None = None  # names for integer labels 0..n-1, in order
    validation_split_percentage: float = 10.0
    max_train_samples: int | None = None
    dataset_description: str | None = None  # for the model card: what the data is, where from, under which terms

    def __post_init__(self):
        _require(bool(self.dataset_name) != bool(self.train_file), "train_file",
                 "give exactly one of --dataset_name or --train_file")
        _require(0 < self.validation_split_percentage < 100, "validation_split_percentage",
                 "must be between 0 and 100")
        _require(self.max_train_samples is None or self.max_train_samples > 0, "max_train_samples",
                 "must be positive")


@dataclass(frozen=True)
class ClassifierModelConfig:
    """Architecture and sizes. LSTM fields apply to `lstm`; `transformer` fine-tunes `model_name_or_path`,
    or, with `model_name_or_path = "scratch"`, trains a small BERT-style encoder of the sizes below."""

    arch: str = "lstm"
    model_name_or_path: str | None = None
    base_model_name: str | None = None  # hub name for the card when model_name_or_path is a local copy
    max_seq_length: int = 128
    vocab_size: int = 16000  # tokenizers trained on the training split (lstm, scratch transformer)
    embedding_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.3
    embedding_dropout: float = 0.1
    pooling: str = "max"
    num_attention_heads: int = 4  # scratch transformer only

    def __post_init__(self):
        _require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        _require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                 "applies to --arch transformer only (the LSTM is trained from scratch)")
        for name in ("max_seq_length", "vocab_size", "embedding_dim", "hidden_size", "num_layers",
                     "num_attention_heads"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.vocab_size >= 100, "vocab_size", "must be at least 100")
        for name in ("dropout", "embedding_dropout"):
            _require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        _require(self.pooling in ("max", "mean", "last"), "pooling", "must be max, mean or last")
        _require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads",
                 "must divide hidden_size")

    @property
    def from_scratch(self) -> bool:
        return self.arch == "lstm" or self.model_name_or_path == SCRATCH


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and bookkeeping, handed to `transformers.TrainingArguments`."""

    output_dir: str = ""
    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float | None = None  # default depends on the architecture, see `default_learning_rate`
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lr_scheduler_type: str = "linear"
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    teacher_model_dir: str | None = None  # a trained classifier whose logits the new model learns from
    transfer_file: str | None = None  # unlabelled texts the teacher labels, added to the training rows
    distillation_alpha: float = 0.5  # weight of the label loss; the teacher's soft loss gets 1 - alpha
    distillation_temperature: float = 2.0
    group_by_length: bool = False  # batch texts of similar length together: less padding, faster epochs
    early_stopping_patience: int = 2
    seed: int = 42
    resume: bool = False
    precision: str = "auto"
    logging_steps: int = 50
    dataloader_num_workers: int = 0
    disable_tqdm: bool = False
    keep_checkpoints: bool = False
    language: str = "en"
    license: str = "other"

    def __post_init__(self):
        _require(bool(self.output_dir), "output_dir", "is required")
        _require(self.num_train_epochs > 0, "num_train_epochs", "must be positive")
        _require(self.learning_rate is None or self.learning_rate > 0, "learning_rate", "must be positive")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0 (0 turns it off)")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")
        _require(self.transfer_file is None or self.teacher_model_dir is not None, "transfer_file",
                 "needs --teacher_model_dir to label its texts")
        _require(0 <= self.distillation_alpha <= 1, "distillation_alpha", "must be in [0, 1]")
        _require(self.distillation_temperature > 0, "distillation_temperature", "must be positive")


def default_learning_rate(arch: str, from_scratch: bool) -> float:
    """Peak learning rates that work for each family: high for recurrent nets, low for fine-tuning."""
    if arch == "lstm":
        return 2e-3
    return 5e-4 if from_scratch else 5e-5


def read_config_file(path: str) -> dict[str, Any]:
    """Read a flat JSON or TOML file of field names to values."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror}", code="config_file_unreadable") from error
    try:
        values = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path}: {error}", code="config_file_unreadable") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a table of field names", code="config_file_unreadable")
    return values


def build_configs(values: dict[str, Any], *classes: type) -> tuple:
    """Split one flat mapping of field values across `classes`; unknown keys are an error."""
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}", code="unknown_setting", field=unknown[0])
    built = []
    for cls in classes:
        fields, hints = {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)
        kwargs = {name: _coerce(values[name], fields[name], hints[name]) for name in fields if name in values}
        try:
            built.append(cls(**kwargs))
        except TypeError as error:
            raise ConfigError(str(error)) from error
    return tuple(built)


def _coerce(value: Any, field: dataclasses.Field, hint: Any) -> Any:
    """Check a value against its field's type (so a bad one names the field); lists become tuples."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)  # `float | None`: both
    if value is None and type(None) in kinds:
        return value
    base = kinds[0]
    if typing.get_origin(base) is tuple:  # label names: a list, or comma-separated text from a flag
        if isinstance(value, (list, tuple)):
            return tuple(str(v) for v in value)
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(","))
        raise ConfigError(f"{field.name}: expected a list of names, got {value!r}", field=field.name)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{field.name}: expected true or false, got {value!r}", field=field.name)
    if base in (int, float) and (isinstance(value, bool) or not isinstance(value, int if base is int else (int, float))):
        raise ConfigError(f"{field.name}: expected {'an integer' if base is int else 'a number'}, got {value!r}",
                          field=field.name)
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{field.name}: expected text, got {value!r}", field=field.name)
    return value


# --- text generators -----------------------------------------------------------------------------------------

GENERATOR_TOKENIZERS = ("bpe", "char")
BUDGET_SCHEDULE_TYPES = ("linear", "cosine", "constant", "constant_with_warmup")  # shapes that can follow a clock


@dataclass(frozen=True)
class TextDataConfig:
    """Where a generator's text comes from: plain text files, a text column of jsonl/csv/parquet, or the hub."""

    dataset_name: str | None = None
    dataset_config_name: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_column: str | None = None  # default: the column named like text, or the only one
    validation_split_percentage: float = 10.0  # without a validation split: the last share of the text, as nanoGPT

    def __post_init__(self):
        _require(bool(self.dataset_name) != bool(self.train_file), "train_file",
                 "give exactly one of --dataset_name or --train_file")
        _require(0 < self.validation_split_percentage < 100, "validation_split_percentage",
                 "must be between 0 and 100")


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
        _require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        _require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                 "applies to --arch transformer only (the LSTM is trained from scratch)")
        _require(self.tokenizer_type in GENERATOR_TOKENIZERS, "tokenizer_type",
                 f"must be one of {GENERATOR_TOKENIZERS}")
        for name in ("embedding_dim", "hidden_size", "num_layers", "num_attention_heads"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.block_size >= 2, "block_size", "must be at least 2")
        _require(self.tokenizer_type != "bpe" or self.vocab_size >= 257, "vocab_size",
                 "must be at least 257 (the 256 bytes and <|endoftext|>)")
        for name in ("dropout", "embedding_dropout"):
            _require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        _require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads", "must divide hidden_size")

    @property
    def from_scratch(self) -> bool:
        return self.model_name_or_path in (None, SCRATCH)


@dataclass(frozen=True)
class GeneratorTrainingConfig:
    """Optimisation and bookkeeping for generators, handed to `transformers.TrainingArguments`."""

    output_dir: str = ""
    num_train_epochs: float = 1.0
    max_steps: int = -1
    max_minutes: float | None = None  # wall-clock budget: training stops, then evaluates and saves as usual
    learning_rate: float | None = None  # default depends on the architecture, see `default_learning_rate`
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    eval_steps: int | None = None  # evaluate and checkpoint every N steps (default: every epoch)
    early_stopping_patience: int = 0  # evaluations without a lower validation loss before stopping; 0: off
    seed: int = 42
    resume: bool = False
    precision: str = "auto"
    logging_steps: int = 50
    dataloader_num_workers: int = 0
    disable_tqdm: bool = False
    keep_checkpoints: bool = False
    sample_prompts: tuple[str, ...] | None = None  # the card's samples; default: "" and starts of validation lines
    sample_max_new_tokens: int = 100
    language: str = "en"
    license: str = "other"

    def __post_init__(self):
        _require(bool(self.output_dir), "output_dir", "is required")
        _require(self.num_train_epochs > 0, "num_train_epochs", "must be positive")
        _require(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be positive")
        _require(self.max_minutes is None or self.lr_scheduler_type in BUDGET_SCHEDULE_TYPES, "lr_scheduler_type",
                 f"with max_minutes, one of {', '.join(BUDGET_SCHEDULE_TYPES)} (the schedule follows the clock)")
        _require(self.learning_rate is None or self.learning_rate > 0, "learning_rate", "must be positive")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "sample_max_new_tokens"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.eval_steps is None or self.eval_steps > 0, "eval_steps", "must be positive")
        _require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0 (0 turns it off)")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")


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
        _require(isinstance(self.stop, (list, tuple)) and all(isinstance(s, str) and s for s in self.stop),
                 "stop", "must be a list of non-empty strings")
        hints = typing.get_type_hints(SamplingConfig)
        for field in dataclasses.fields(self):  # requests arrive as JSON: check types before comparing values
            object.__setattr__(self, field.name, _coerce(getattr(self, field.name), field, hints[field.name]))
        _require(self.max_new_tokens > 0, "max_new_tokens", "must be positive")
        _require(0 <= self.temperature < float("inf"), "temperature", "must be >= 0 (0 is greedy)")
        _require(self.top_k >= 0, "top_k", "must be >= 0 (0 is off)")
        _require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _require(0 < self.repetition_penalty < float("inf"), "repetition_penalty", "must be positive")
        _require(len(self.stop) <= 16, "stop", "at most 16 stop strings")
        _require(self.seed is None or 0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# --- serving ------------------------------------------------------------------------------------------------

ENV_PREFIX = "TEXTSVC_"  # TEXTSVC_API_KEYS=k1,k2 sets `api_keys`: keys stay out of argv and shell history


@dataclass(frozen=True)
class ServingConfig:
    """What `textsvc serve` loads and the limits it enforces on requests, batches and queues."""

    models_dir: str | None = None  # unset: the default models, prepared once under `home` (textsvc.defaults)
    home: str | None = None  # textsvc's cache, TEXTSVC_HOME (default: see `textsvc_home`)
    default_classifier: str | None = None  # default: the only classifier, if there is one
    default_generator: str | None = None  # default: the only generator, if there is one
    device: str | None = None  # cpu, cuda or cuda:N (default: cuda when present)
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8  # waitress worker threads: concurrent requests, streams included
    max_batch_size: int = 32  # texts per classifier forward pass
    max_wait_ms: float = 5.0  # how long a batch waits for more requests before running
    max_generation_batch_size: int = 16  # sequences each generator decodes together (continuous batching)
    max_queue_size: int = 256  # texts waiting per classifier, and requests waiting per generator, before 503
    max_inputs: int = 64  # texts per /classify request
    max_content_length: int = 1_000_000  # bytes per request body
    max_new_tokens_limit: int = 512  # the largest max_new_tokens a request may ask for
    retry_after_s: int = 1  # the Retry-After header of an `overloaded` answer
    api_keys: tuple[str, ...] | None = None  # Bearer keys for the inference routes; unset: open
    warmup: bool = True  # one tiny request per model before /ready says yes
    load_in_background: bool = False  # answer /health (and 503 on /ready) while models load

    def __post_init__(self):
        _require(self.models_dir is None or bool(self.models_dir), "models_dir",
                 "must not be empty (leave it unset to serve the default models)")
        _require(self.home is None or bool(self.home), "home", "must not be empty")
        for name in ("port", "threads", "max_batch_size", "max_generation_batch_size", "max_queue_size", "max_inputs",
                     "max_content_length", "max_new_tokens_limit"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.port < 65536, "port", "must be below 65536")
        _require(0 <= self.max_wait_ms <= 10_000, "max_wait_ms", "must be in [0, 10000]")
        _require(self.retry_after_s >= 0, "retry_after_s", "must be >= 0")
        _require(self.api_keys is None or all(self.api_keys), "api_keys", "must not contain empty keys")


def serving_env_values(environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """ServingConfig fields set as TEXTSVC_<FIELD> environment variables, converted to the fields' types."""
    import os  # read here, at call time, never on import

    environ = os.environ if environ is None else environ
    hints, values = typing.get_type_hints(ServingConfig), {}
    for field in dataclasses.fields(ServingConfig):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None:
            continue
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        base = next(kind for kind in kinds if kind is not type(None))
        try:
            if base is bool:
                values[field.name] = {"1": True, "true": True, "0": False, "false": False}[raw.strip().lower()]
            elif base in (int, float):
                values[field.name] = base(raw)
            else:
                values[field.name] = raw  # tuples: comma-separated, split by `build_configs`
        except (KeyError, ValueError) as error:
            raise ConfigError(f"{ENV_PREFIX}{field.name.upper()}: cannot read {raw!r} as {base.__name__}",
                              field=field.name) from error
    return values


def textsvc_home(home: str | None = None, environ: typing.Mapping[str, str] | None = None) -> Path:
    """textsvc's cache folder: `home`, else $TEXTSVC_HOME, else $XDG_CACHE_HOME/textsvc or ~/.cache/textsvc."""
    import os  # read here, at call time, never on import

    environ = os.environ if environ is None else environ
    chosen = home or environ.get(ENV_PREFIX + "HOME")
    if chosen:
        return Path(chosen).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "textsvc"
