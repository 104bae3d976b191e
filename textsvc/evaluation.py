"""Evaluate a saved model directory on any labelled file: the same report training writes."""

from __future__ import annotations

import torch

from textsvc.data import guess_column, label_encoder, load_file, LABEL_COLUMN_GUESSES, TEXT_COLUMN_GUESSES
from textsvc.errors import DataError
from textsvc.inference import classify_logits, load_classifier
from textsvc.metrics import classification_report


def evaluate_classifier(model_dir: str, test_file: str, text_column: str | None = None,
                        label_column: str | None = None, device: str | None = None, batch_size: int = 64) -> dict:
    """Accuracy, macro precision/recall/F1, per-class figures, confusion matrix and mean loss on `test_file`."""
    classifier = load_classifier(model_dir, device)
    dataset = load_file(test_file)
    columns = list(dataset.column_names)
    text_column = text_column or guess_column(columns, TEXT_COLUMN_GUESSES, "text")
    label_column = label_column or guess_column(columns, LABEL_COLUMN_GUESSES, "label", exclude=text_column)
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{test_file} has no column {column!r}; columns are {columns}", code="unknown_column")
    if len(dataset) == 0:
        raise DataError(f"{test_file} holds no examples", code="empty_split")
    names = tuple(classifier.label_names)
    # integer labels are ids unless the model's own label names are numbers
    encode = label_encoder(not any(name.lstrip("-").isdigit() for name in names), names)
    texts, labels = dataset[text_column], []
    for row, (text, label) in enumerate(zip(texts, dataset[label_column])):
        if not isinstance(text, str):
            raise DataError(f"row {row + 1}: column {text_column!r} holds {text!r}, not text", code="non_text_value")
        label_id = encode(label)
        if label_id is None:
            raise DataError(f"row {row + 1}: label {label!r} is not one the model knows ({list(names)})",
                            code="unseen_label")
        labels.append(label_id)
    logits = classify_logits(classifier, texts, batch_size)
    targets = torch.tensor(labels)
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    return {"loss": loss, **classification_report(targets.numpy(), logits.argmax(-1).numpy(), names)}
