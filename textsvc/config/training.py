"""Training configuration: where the data comes from, the model's sizes, and optimisation, for classifiers and
generators side by side over shared bases (`SourceConfig`, `OptimisationConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from textsvc.config.common import names_as_tuple, require

ARCHS = ("lstm", "transformer")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCRATCH = "scratch"  # --model_name_or_path value asking for a transformer trained from scratch
GENERATOR_TOKENIZERS = ("bpe", "char")
BUDGET_SCHEDULE_TYPES = ("linear", "cosine", "constant", "constant_with_warmup")  # shapes that can follow a clock


@dataclass(frozen=True)
class SourceConfig:
    """Where a data set comes from (a hub name or local files), and the share carved off when it has no validation
    split. Classifier and generator data configs add their own fields."""

    dataset_name: str | None = None
    dataset_config_name: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_column: str | None = None  # default: the column named like text, or the only one
    validation_split_percentage: float = 10.0

    def __post_init__(self):
        require(bool(self.dataset_name) != bool(self.train_file), "train_file",
                "give exactly one of --dataset_name or --train_file")
        require(0 < self.validation_split_percentage < 100, "validation_split_percentage",
                "must be between 0 and 100")


@dataclass(frozen=True)
class DataConfig(SourceConfig):
    """Where a classifier's examples come from and which columns hold them (a seeded, stratified validation
    split is carved from train when there is no validation file)."""

    test_file: str | None = None
    label_column: str | None = None
    label_names: tuple[str, ...] | None = None  # names for integer labels 0..n-1, in order
    max_train_samples: int | None = None
    dataset_description: str | None = None  # for the model card: what the data is, where from, under which terms

    def __post_init__(self):
        super().__post_init__()
        names_as_tuple(self, "label_names")
        require(self.max_train_samples is None or self.max_train_samples > 0, "max_train_samples",
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
    # pretrained transformer only: "cls" is the architecture's own head; "mean" pools the token states;
    # "auto" is "mean" for sentence-embedding models trained to mean-pool (their 1_Pooling config), else "cls".
    # "cls" by default: on SST-2, all-MiniLM-L6-v2 scored 89.7% with it and 89.3% mean-pooled (same recipe)
    classifier_pooling: str = "cls"

    def __post_init__(self):
        require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                "applies to --arch transformer only (the LSTM is trained from scratch)")
        for name in ("max_seq_length", "vocab_size", "embedding_dim", "hidden_size", "num_layers",
                     "num_attention_heads"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.vocab_size >= 100, "vocab_size", "must be at least 100")
        for name in ("dropout", "embedding_dropout"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        require(self.pooling in ("max", "mean", "last"), "pooling", "must be max, mean or last")
        require(self.classifier_pooling in ("auto", "cls", "mean"), "classifier_pooling", "must be auto, cls or mean")
        require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads",
                "must divide hidden_size")

    @property
    def from_scratch(self) -> bool:
        return self.arch == "lstm" or self.model_name_or_path == SCRATCH


@dataclass(frozen=True)
class OptimisationConfig:
    """Optimisation and bookkeeping every training run shares, handed to `transformers.TrainingArguments`."""

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
    early_stopping_patience: int = 2  # evaluations without improvement before stopping; 0: off
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
        require(bool(self.output_dir), "output_dir", "is required")
        require(self.num_train_epochs > 0, "num_train_epochs", "must be positive")
        require(self.learning_rate is None or self.learning_rate > 0, "learning_rate", "must be positive")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0 (0 turns it off)")
        require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")


@dataclass(frozen=True)
class TrainingConfig(OptimisationConfig):
    """A classifier's training run: the shared settings, plus knowledge distillation and length grouping."""

    teacher_model_dir: tuple[str, ...] | None = None  # trained classifiers (one, or an ensemble) the model learns from
    transfer_file: str | None = None  # unlabelled texts the teacher labels, added to the training rows
    distillation_alpha: float = 0.5  # weight of the label loss; the teacher's soft loss gets 1 - alpha
    distillation_temperature: float = 2.0
    group_by_length: bool = False  # batch texts of similar length together: less padding, faster epochs

    def __post_init__(self):
        super().__post_init__()
        names_as_tuple(self, "teacher_model_dir")
        require(self.transfer_file is None or self.teacher_model_dir is not None, "transfer_file",
                "needs --teacher_model_dir to label its texts")
        require(0 <= self.distillation_alpha <= 1, "distillation_alpha", "must be in [0, 1]")
        require(self.distillation_temperature > 0, "distillation_temperature", "must be positive")


def default_learning_rate(arch: str, from_scratch: bool) -> float:
    """Peak learning rates that work for each family: high for recurrent nets, low for fine-tuning."""
    if arch == "lstm":
        return 2e-3
    return 5e-4 if from_scratch else 5e-5


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
