"""Truth-table tests of the classification report against hand-computed figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from textsvc.training.metrics import classification_report, confusion_matrix, mean_cross_entropy, scalar_metrics

# true:      a  a  a  b  b  c  c  c      (class c is never predicted)
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDICTIONS = [0, 0, 1, 1, 0, 1, 0, 1]


def test_three_classes_with_a_class_never_predicted():
    report = classification_report(LABELS, PREDICTIONS, ["a", "b", "c"])
    assert report["confusion_matrix"] == {"labels": ["a", "b", "c"], "matrix": [[2, 1, 0], [1, 1, 0], [1, 2, 0]]}
    assert report["accuracy"] == pytest.approx(3 / 8)
    assert report["num_samples"] == 8
    # precision = TP / predicted: a 2/4, b 1/4, c 0/0 -> 0; recall = TP / actual: a 2/3, b 1/2, c 0/3
    expected = {"a": (1 / 2, 2 / 3, 4 / 7, 3), "b": (1 / 4, 1 / 2, 1 / 3, 2), "c": (0.0, 0.0, 0.0, 3)}
    for name, (precision, recall, f1, support) in expected.items():
        assert report["per_class"][name] == pytest.approx(
            {"precision": precision, "recall": recall, "f1": f1, "support": support})
    assert report["macro_precision"] == pytest.approx(1 / 4)
    assert report["macro_recall"] == pytest.approx(7 / 18)
    assert report["macro_f1"] == pytest.approx(19 / 63)
    numbers = [report[key] for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1")]
    numbers += [value for figures in report["per_class"].values() for value in figures.values()]
    assert not any(math.isnan(value) for value in numbers)


def test_perfect_predictions():
    report = classification_report([1, 0, 1], [1, 0, 1], ("neg", "pos"))
    assert report["accuracy"] == report["macro_precision"] == report["macro_recall"] == report["macro_f1"] == 1.0
    assert report["per_class"]["pos"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_class_absent_from_labels_and_predictions_scores_zero():
    report = classification_report([0, 1], [0, 1], ["x", "y", "z"])
    assert report["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(2 / 3)


def test_all_wrong():
    report = classification_report([0, 0, 1], [1, 1, 0], ["neg", "pos"])
    assert report["accuracy"] == 0.0 and report["macro_f1"] == 0.0


def test_confusion_matrix_counts_rows_as_true_labels():
    assert confusion_matrix([0, 1, 1, 1], [1, 1, 1, 0], 2).tolist() == [[0, 1], [1, 2]]


def test_scalar_metrics_are_the_report_headline():
    assert scalar_metrics(LABELS, PREDICTIONS, 3) == pytest.approx(
        {"accuracy": 3 / 8, "macro_precision": 1 / 4, "macro_recall": 7 / 18, "macro_f1": 19 / 63})


def test_mean_cross_entropy_is_torchs_and_stays_finite_for_large_logits():
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(7, 4, generator=generator) * 30, torch.tensor([0, 1, 2, 3, 3, 2, 1])
    expected = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    assert mean_cross_entropy(logits.numpy(), labels.numpy()) == pytest.approx(expected, rel=1e-12)
    assert mean_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1])) == pytest.approx(2000.0)
