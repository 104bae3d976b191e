"""Fine-tune classifiers of every architecture with the Hugging Face `Trainer`; write the model directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from textsvc.config.common import require
from textsvc.config.training import (
    LSTM_CLASSIFIER_SIZES,
    ClassifierModelConfig,
    DataConfig,
    TrainingConfig,
    default_learning_rate,
    default_num_train_epochs,
    default_refit,
)
from textsvc.modeldir import read_json
from textsvc.models.lstm import LSTMConfig, LSTMForSequenceClassification
from textsvc.models.pooled_encoder import PooledEncoderForSequenceClassification
from textsvc.pretrained import default_encoder_path, hub_id_for, sentence_embedding_pooling
from textsvc.tokenization import load_tokenizer, train_wordpiece_tokenizer
from textsvc.training.adversarial import AdversarialTrainer
from textsvc.training.common import (
    learnt_tokenizer,
    optimisation_record,
    publish,
    run_record,
    save_model_files,
    shared_arguments,
    start_run,
)
from textsvc.training.data import LabelledSplits, load_labelled_splits, load_texts
from textsvc.training.distillation import TEACHER_COLUMN, DistillationTrainer, teacher_logits
from textsvc.training.embedding_init import (
    copy_input_embeddings,
    embedding_source,
    embedding_tokenizer,
    pretrained_input_embeddings,
    settle_embedding_init,
)
from textsvc.training.lm_pretraining import lm_pretraining
from textsvc.training.metrics import classification_report, mean_cross_entropy, scalar_metrics
from textsvc.training.refit import (
    StopAtEpoch,
    best_epoch,
    has_initial_weights,
    load_initial_weights,
    refit_arguments,
    save_initial_weights,
)


def training_arguments(train: TrainingConfig, model: ClassifierModelConfig, run_dir: Path) -> TrainingArguments:
    """`TrainingArguments` for one run: evaluate and save every epoch, keep the best checkpoint on validation."""
    return TrainingArguments(
        **{**shared_arguments(train, train.learning_rate or default_learning_rate(model.arch, model.from_scratch),
                              run_dir),
           "num_train_epochs": train.num_train_epochs or default_num_train_epochs(model.arch)},
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        remove_unused_columns=not train.teacher_model_dir,  # keep the teacher's logits for the loss
        eval_strategy="epoch", save_strategy="epoch", metric_for_best_model=train.metric_for_best_model,
        greater_is_better=train.metric_for_best_model != "loss",
    )


def prepare_tokenizer(model: ClassifierModelConfig, splits: LabelledSplits, run_dir: Path,
                      args: TrainingArguments) -> PreTrainedTokenizerBase:
    """The pretrained model's tokenizer (the encoder's, or the embeddings' source's), or a WordPiece one learnt from
    the training split."""
    if model.pretrained_embeddings:
        with args.main_process_first(desc="loading the embeddings' tokenizer"):  # a hub download happens once
            return embedding_tokenizer(model.embedding_init)
    if not model.from_scratch:
        return load_tokenizer(model.model_name_or_path or default_encoder_path())
    return learnt_tokenizer(run_dir, args, lambda: train_wordpiece_tokenizer(
        splits.splits["train"]["text"], model.vocab_size, model.max_seq_length,
        with_cls_sep=model.arch == "transformer"))


def build_classifier(model: ClassifierModelConfig, tokenizer: PreTrainedTokenizerBase,
                     label_names: Sequence[str]) -> transformers.PreTrainedModel:
    """A new LSTM, a new small BERT-style encoder, or a pretrained encoder with a fresh classification head."""
    labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
              "label2id": {name: i for i, name in enumerate(label_names)}}
    if model.arch == "lstm":
        return build_lstm(model, tokenizer, labels)
    if model.from_scratch:
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=model.hidden_size, num_hidden_layers=model.num_layers,
            num_attention_heads=model.num_attention_heads, intermediate_size=4 * model.hidden_size,
            max_position_embeddings=model.max_seq_length, hidden_dropout_prob=model.dropout,
            attention_probs_dropout_prob=model.dropout, pad_token_id=tokenizer.pad_token_id, **labels)
        return BertForSequenceClassification(config)
    path = model.model_name_or_path or default_encoder_path()
    if classifier_pooling(model) == "mean":
        return PooledEncoderForSequenceClassification.from_encoder(path, **labels)
    return AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **labels)


def build_lstm(model: ClassifierModelConfig, tokenizer: PreTrainedTokenizerBase,
               labels: dict) -> LSTMForSequenceClassification:
    """A new LSTM; with `embedding_init`, its embeddings start from the pretrained model's, at their width (no
    projection: the LSTM's input weights are a linear map of the embeddings already)."""
    weight = pretrained_input_embeddings(model.embedding_init) if model.pretrained_embeddings else None  # (V, E)
    sizes = {**model.lstm_sizes(), **({"embedding_dim": weight.shape[1]} if weight is not None else {})}
    vocab_size = len(tokenizer) if weight is None else max(len(tokenizer), weight.shape[0])
    config = LSTMConfig(vocab_size=vocab_size, **sizes, max_position_embeddings=model.max_seq_length,
                        pad_token_id=tokenizer.pad_token_id, **labels)
    network = LSTMForSequenceClassification(config)
    if weight is not None:
        copy_input_embeddings(network, weight, model.freeze_embeddings)
    return network


def classifier_pooling(model: ClassifierModelConfig) -> str:
    """The head of a pretrained transformer: "mean" or "cls" (see `ClassifierModelConfig.classifier_pooling`)."""
    if model.classifier_pooling != "auto":
        return model.classifier_pooling
    trained_with = sentence_embedding_pooling(model.model_name_or_path or default_encoder_path())
    return "mean" if trained_with == "mean" else "cls"


def compute_epoch_metrics(num_labels: int):
    """The `Trainer`'s `compute_metrics`: scalar figures from logits, the mean loss among them."""
    def compute(eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        # the loss is recomputed from the logits, which the Trainer gathers without the rows that padded the ranks'
        # last batches; its own eval_loss repeats each batch's mean loss, and under DDP accelerate fills the ranks'
        # batches with rows from the start, so it weighed some rows twice (0.001 off on a 40-row set, 2 processes).
        # An un-prefixed "loss" replaces the Trainer's eval_loss (it prefixes after setting its own)
        return {"loss": mean_cross_entropy(logits, labels), **scalar_metrics(labels, np.argmax(logits, axis=-1),
                                                                             num_labels)}
    return compute


def evaluate_split(trainer: Trainer, dataset, label_names: Sequence[str]) -> dict:
    """The full report (per class, confusion matrix) plus the mean loss on one tokenized split."""
    output = trainer.predict(dataset, metric_key_prefix="eval")
    report = classification_report(output.label_ids, np.argmax(output.predictions, axis=-1), label_names)
    return {"loss": float(output.metrics["eval_loss"]), **report}


def train_classifier(data: DataConfig, model: ClassifierModelConfig, train: TrainingConfig,
                     callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train, evaluate on validation (and test), and write the model directory with its card."""
    started = time.time()
    model = settle_embedding_init(model)
    require(model.arch == "lstm" or not train.lm_pretrain_epochs, "lm_pretrain_epochs",
            "applies to --arch lstm only (a transformer brings its own pre-training)")
    run_dir, last_checkpoint = start_run(train)
    refit = train.refit if train.refit is not None else default_refit(model.arch)
    require(not (refit and last_checkpoint) or has_initial_weights(run_dir), "refit",
            "the interrupted run started without refitting (no initial weights were kept); resume it with --no-refit")
    splits = load_labelled_splits(data)
    args = training_arguments(train, model, run_dir)
    tokenizer = prepare_tokenizer(model, splits, run_dir, args)
    classifier = build_classifier(model, tokenizer, splits.label_names)
    # the models return a mean loss and ignore `num_items_in_batch`; without this the Trainer multiplies the loss
    # (and the gradients) by the number of processes under DDP and skips the division by accumulation steps
    classifier.accepts_loss_kwargs = False

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=model.max_seq_length)

    tokenized = splits.splits.map(tokenize, batched=True, remove_columns=["text"], desc="tokenizing")
    lm_record = lm_pretraining(classifier, tokenized, tokenizer, train, run_dir, resuming=bool(last_checkpoint))
    if refit and not last_checkpoint:
        save_initial_weights(classifier, run_dir, args)
    train_rows = (distillation_rows(tokenized["train"], splits, train, tokenizer, classifier.config)
                  if train.teacher_model_dir else tokenized["train"])
    trainer = make_trainer(classifier, args, tokenizer, train_rows, tokenized["validation"], splits, train,
                           [*early_stopping(train), *callbacks])
    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
    results = {"eval": evaluate_split(trainer, tokenized["validation"], splits.label_names)}
    final, refit_record = trainer, None  # the trainer whose model is saved and tested
    if refit and (epochs := best_epoch(trainer.state)) is not None:
        final = refit_on_validation(model, tokenizer, splits, tokenized, train_rows, args, train, run_dir, epochs,
                                    callbacks)
        refit_record = {"epochs": epochs, "epochs_completed": round(final.state.epoch or 0, 2),
                        "train_rows": len(final.train_dataset),
                        "train_loss": final.state.log_history[-1].get("train_loss")}
        if "test" in tokenized:  # what the refit changed, in the same run; the refit model is kept whatever it scores
            selection_test = evaluate_split(trainer, tokenized["test"], splits.label_names)
            refit_record["selection_run_test"] = {key: selection_test[key] for key in ("accuracy", "macro_f1")}
    if "test" in tokenized:
        results["test"] = evaluate_split(final, tokenized["test"], splits.label_names)

    def write(staging: Path) -> None:  # the selection run's record and curves, the final model
        info = training_info(data, model, train, splits, trainer, train_result.metrics, time.time() - started)
        info["lm_pretraining"], info["refit"] = lm_record, refit_record
        save_model_files(staging, trainer, info, {f"{split}_results.json": report for split, report in results.items()},
                         model=final.model)

    return publish(trainer, train, run_dir, write)


def early_stopping(train: TrainingConfig) -> list[TrainerCallback]:
    return [EarlyStoppingCallback(train.early_stopping_patience)] if train.early_stopping_patience else []


def make_trainer(model: transformers.PreTrainedModel, args: TrainingArguments, tokenizer: PreTrainedTokenizerBase,
                 train_rows, validation_rows, splits: LabelledSplits, train: TrainingConfig,
                 callbacks: Sequence[TrainerCallback]) -> Trainer:
    """An `AdversarialTrainer` (a plain `Trainer` when `adversarial_epsilon` is 0), or a `DistillationTrainer` when
    the training rows carry the teacher's logits."""
    common = dict(model=model, args=args, train_dataset=train_rows, eval_dataset=validation_rows,
                  processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                  compute_metrics=compute_epoch_metrics(len(splits.label_names)),
                  callbacks=list(callbacks), adversarial_epsilon=train.adversarial_epsilon)
    if not train.teacher_model_dir:
        return AdversarialTrainer(**common)
    return DistillationTrainer(**common, alpha=train.distillation_alpha, temperature=train.distillation_temperature)


def refit_on_validation(model: ClassifierModelConfig, tokenizer: PreTrainedTokenizerBase, splits: LabelledSplits,
                        tokenized, train_rows, args: TrainingArguments, train: TrainingConfig, run_dir: Path,
                        epochs: float, callbacks: Sequence[TrainerCallback]) -> Trainer:
    """Train again from the selection run's initial weights on its training rows plus the validation rows, on the
    same schedule, up to the end of the epoch validation chose (see `textsvc.training.refit`)."""
    validation_rows = tokenized["validation"]
    if train.teacher_model_dir:  # the validation rows learn from the teachers too, as the training rows did
        validation_rows = with_teacher_logits(validation_rows, splits.splits["validation"]["text"], train,
                                              splits.label_names)
    classifier = build_classifier(model, tokenizer, splits.label_names)
    classifier.accepts_loss_kwargs = False
    load_initial_weights(classifier, run_dir)
    rows = datasets.concatenate_datasets([train_rows, validation_rows.cast(train_rows.features)])
    trainer = make_trainer(classifier, refit_arguments(args, run_dir), tokenizer, rows, None, splits, train,
                           [StopAtEpoch(epochs), *callbacks])
    trainer.train()
    return trainer


def with_teacher_logits(tokenized_rows, texts: Sequence[str], train: TrainingConfig, label_names: Sequence[str]):
    """Tokenized rows of `texts` with the teachers' log-probabilities."""
    return tokenized_rows.add_column(TEACHER_COLUMN, teacher_logits(train.teacher_model_dir, texts, label_names))


def distillation_rows(tokenized_train, splits: LabelledSplits, train: TrainingConfig,
                      tokenizer: PreTrainedTokenizerBase, model_config):
    """Training rows with the teachers' log-probabilities; transfer texts join them, labelled with their choice."""
    rows = with_teacher_logits(tokenized_train, splits.splits["train"]["text"], train, splits.label_names)
    if not train.transfer_file:
        return rows
    transfer_texts = load_texts(train.transfer_file)
    transfer_logits = teacher_logits(train.teacher_model_dir, transfer_texts, splits.label_names)
    max_length = getattr(model_config, "max_position_embeddings", None) or tokenizer.model_max_length
    encoded = tokenizer(transfer_texts, truncation=True, max_length=min(max_length, tokenizer.model_max_length))
    transfer = datasets.Dataset.from_dict({
        **{name: encoded[name] for name in rows.column_names if name in encoded},
        "label": [int(np.argmax(row)) for row in transfer_logits], TEACHER_COLUMN: transfer_logits,
    }).cast(rows.features)
    return datasets.concatenate_datasets([rows, transfer])


def training_info(data: DataConfig, model: ClassifierModelConfig, train: TrainingConfig, splits: LabelledSplits,
                  trainer: Trainer, train_metrics: dict, wall_seconds: float) -> dict:
    """What the model card says about how the model was made, saved as `training_info.json`."""
    base = None if model.from_scratch else (model.model_name_or_path or default_encoder_path())
    label_counts = {name: {label: int(count) for label, count in zip(
        splits.label_names, np.bincount(split["label"], minlength=len(splits.label_names)))}
        for name, split in splits.splits.items()}
    return {
        "task": "text-classification", "arch": model.arch, "from_scratch": model.from_scratch,
        "base_model": (model.base_model_name or hub_id_for(base)) if base else None,
        "dataset": splits.source, "dataset_files": splits.files, "dataset_description": data.dataset_description,
        "validation_carved_from_train": data.validation_file is None and data.dataset_name is None,
        "split_sizes": {name: len(split) for name, split in splits.splits.items()},
        "label_counts": label_counts, "labels": list(splits.label_names),
        "hyperparameters": {
            **optimisation_record(trainer, train), "max_seq_length": model.max_seq_length,
            "early_stopping_patience": train.early_stopping_patience,
            **({"adversarial_epsilon": train.adversarial_epsilon} if train.adversarial_epsilon else {}),
            **({"vocab_size": model.vocab_size} if model.from_scratch and not model.pretrained_embeddings else {}),
            **(_architecture_fields(model, trainer.model)),
        },
        "embedding_init": embedding_info(model, trainer.model),
        "distillation": distillation_info(train, len(trainer.train_dataset) - len(splits.splits["train"])),
        "best_checkpoint_metric": {train.metric_for_best_model: trainer.state.best_metric},
        **run_record(trainer, train, train_metrics, wall_seconds),
    }


def distillation_info(train: TrainingConfig, transfer_examples: int) -> dict | None:
    """The teacher and loss mix of a distilled model, for its card."""
    if not train.teacher_model_dir:
        return None
    teachers = [{"name": Path(directory).resolve().name,
                 "base_model": (read_json(Path(directory) / "training_info.json") or {}).get("base_model")}
                for directory in train.teacher_model_dir]
    return {"teachers": teachers, "alpha": train.distillation_alpha, "temperature": train.distillation_temperature,
            **({"transfer_file": Path(train.transfer_file).name, "transfer_examples": transfer_examples}
               if train.transfer_file else {})}


def embedding_info(model: ClassifierModelConfig, network: transformers.PreTrainedModel) -> dict | None:
    """Where a pretrained-initialised LSTM's embeddings (and tokenizer) came from, for its card."""
    if not model.pretrained_embeddings:
        return None
    return {"source": embedding_source(model.embedding_init), "frozen": model.freeze_embeddings,
            "vocab_size": network.config.vocab_size, "embedding_dim": network.config.embedding_dim}


def _architecture_fields(model: ClassifierModelConfig, network: transformers.PreTrainedModel) -> dict:
    if model.arch == "lstm":  # read off the built model: with embedding_init, embedding_dim is the pretrained width
        return {name: getattr(network.config, name) for name in LSTM_CLASSIFIER_SIZES}
    if model.from_scratch:
        return {"hidden_size": model.hidden_size, "num_layers": model.num_layers,
                "num_attention_heads": model.num_attention_heads, "dropout": model.dropout}
    # read off the built model: resolving "auto" again would re-read the base model's pooling config
    return {"classifier_pooling": "mean" if isinstance(network, PooledEncoderForSequenceClassification) else "cls"}
