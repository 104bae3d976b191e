"""Classification metrics: accuracy, macro precision/recall/F1, a per-class table and the confusion matrix.

Written with numpy rather than pulling in scikit-learn (and SciPy) for twenty lines of counting; the
definitions match `sklearn.metrics.precision_recall_fscore_support(average="macro", zero_division=0)`.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts; rows are true labels, columns predicted labels."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def mean_cross_entropy(logits, labels) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits): torch's cross-entropy, in float64."""
    if len(labels) == 0:
        return 0.0
    return torch.nn.functional.cross_entropy(torch.as_tensor(np.asarray(logits), dtype=torch.float64),
                                             torch.as_tensor(np.asarray(labels), dtype=torch.long)).item()


def classification_report(labels, predictions, label_names: list[str] | tuple[str, ...]) -> dict:
    """Every figure the evaluation files and model cards report, as plain JSON-able values."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    matrix = confusion_matrix(labels, predictions, len(label_names))
    true_positives = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return {
        "accuracy": float(true_positives.sum() / max(len(labels), 1)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "num_samples": int(len(labels)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": {"labels": list(label_names), "matrix": matrix.tolist()},
    }


def scalar_metrics(labels, predictions, num_labels: int) -> dict[str, float]:
    """The figures the `Trainer` logs each epoch (it accepts only scalars)."""
    names = [str(i) for i in range(num_labels)]
    report = classification_report(labels, predictions, names)
    return {key: report[key] for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1")}
