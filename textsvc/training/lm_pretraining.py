"""Language-model pre-training of a new LSTM classifier on its own training texts, before it is fine-tuned on the
labels (Dai & Le 2015, "Semi-supervised Sequence Learning"): the classifier's embedding + LSTM learn to predict
each next (and, read backwards, each previous) token, then classification starts from those weights."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, Trainer, TrainingArguments

from textsvc.config.training import TrainingConfig, default_learning_rate
from textsvc.modeldir import read_json, write_json
from textsvc.models.lstm import LSTMEncoderLM, LSTMForSequenceClassification
from textsvc.training.common import shared_arguments


def output_index(token_ids: list[list[int]], vocab_size: int) -> torch.Tensor:
    """(V,) row of the language model's output layer for each token id that occurs in `token_ids`, -100 for the
    others (never predicted, so never given a row)."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    for ids in token_ids:
        seen[ids] = True
    index = torch.full((vocab_size,), -100, dtype=torch.long)
    index[seen] = torch.arange(int(seen.sum()))
    return index


def lm_arguments(train: TrainingConfig, run_dir: Path) -> TrainingArguments:
    """The classifier's own optimisation settings, for `lm_pretrain_epochs` passes with no evaluation or saving."""
    return TrainingArguments(**{
        **shared_arguments(train, train.learning_rate or default_learning_rate("lstm", True), run_dir),
        "num_train_epochs": train.lm_pretrain_epochs, "max_steps": -1, "eval_strategy": "no", "save_strategy": "no",
        "load_best_model_at_end": False, "remove_unused_columns": False})


def lm_rows(split: datasets.Dataset) -> datasets.Dataset:
    """The token ids of a tokenized split, without its labels (the language model reads text only)."""
    return split.select_columns(["input_ids", "attention_mask"])


@torch.no_grad()
def lm_loss(model: LSTMEncoderLM, rows: datasets.Dataset, collator, batch_size: int) -> float:
    """Mean per-batch language-model loss over `rows`, in eval mode (no dropout); the mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = [model(**{name: tensor.to(device) for name, tensor in batch.items()})["loss"].item()
              for batch in DataLoader(rows, batch_size=batch_size, collate_fn=collator)]
    model.train(was_training)
    return sum(losses) / max(len(losses), 1)


def lm_pretraining(classifier: LSTMForSequenceClassification, tokenized: datasets.DatasetDict,
                   tokenizer: PreTrainedTokenizerBase, train: TrainingConfig, run_dir: Path,
                   resuming: bool) -> dict | None:
    """Pre-train when asked (`lm_pretrain_epochs`), keeping the record in the run directory; a resumed run's
    checkpoint holds weights that started from the pre-training already, so it only reads that record back."""
    if not train.lm_pretrain_epochs:
        return None
    saved = run_dir / "lm_pretraining.json"
    if resuming:
        return read_json(saved) or {"epochs": train.lm_pretrain_epochs, "record": "lost (resumed run)"}
    record = pretrain_encoder(classifier, tokenized, tokenizer, train, run_dir)
    saved.parent.mkdir(parents=True, exist_ok=True)
    write_json(saved, record)
    return record


def pretrain_encoder(classifier: LSTMForSequenceClassification, tokenized: datasets.DatasetDict,
                     tokenizer: PreTrainedTokenizerBase, train: TrainingConfig, run_dir: Path) -> dict:
    """Train `classifier`'s embedding + LSTM in place as a language model on the training split's texts; returns
    the record for `training_info.json` (its loss on the validation texts before and after, among others)."""
    started = time.time()
    train_rows, validation_rows = lm_rows(tokenized["train"]), lm_rows(tokenized["validation"])
    index = output_index(train_rows["input_ids"], classifier.config.vocab_size)
    model = LSTMEncoderLM(classifier.encoder, index, classifier.config.dropout).to(classifier.device)
    collator = DataCollatorWithPadding(tokenizer)
    trainer = Trainer(model=model, args=lm_arguments(train, run_dir / "lm-pretraining"), train_dataset=train_rows,
                      data_collator=collator)
    before = lm_loss(model, validation_rows, collator, train.per_device_eval_batch_size)
    result = trainer.train()
    after = lm_loss(model, validation_rows, collator, train.per_device_eval_batch_size)
    return {
        "method": "Dai & Le 2015: next-token prediction on the training texts, then fine-tuning on the labels",
        "directions": ("forward predicts the next token, backward the previous one"
                       if classifier.config.bidirectional else "forward predicts the next token"),
        "epochs": train.lm_pretrain_epochs, "steps": trainer.state.global_step, "texts": len(train_rows),
        "pretrained_layers": model.pretrained_layers, "num_layers": classifier.config.num_layers,
        "output_vocabulary": int((index >= 0).sum()),
        "validation_loss_before": round(before, 4), "validation_loss_after": round(after, 4),
        "train_loss": round(result.training_loss, 4), "wall_seconds": round(time.time() - started, 1),
    }
