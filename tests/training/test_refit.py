"""Refit: once validation has chosen the epoch, the classifier trains again on training + validation up to it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from textsvc.config.training import default_refit
from textsvc.errors import ConfigError
from textsvc.loading import classify_logits, load_classifier
from textsvc.modeldir import read_json
from textsvc.training.common import checkpoints_dir

from conftest import sentiment_rows, train_tiny, write_rows


@pytest.fixture(scope="module")
def noisy_train_file(tmp_path_factory):
    """A quarter of the labels flipped, so that validation peaks before the last epoch."""
    rows = [{**row, "label": {"neg": "pos", "pos": "neg"}[row["label"]] if i % 4 == 0 else row["label"]}
            for i, row in enumerate(sentiment_rows(120, seed=0))]
    return write_rows(tmp_path_factory.mktemp("noisy") / "train.csv", rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, noisy_train_file, data_dir):
    """The same seeded LSTM run without and with the refit."""
    root = tmp_path_factory.mktemp("refit")
    splits = {"validation_file": str(data_dir / "dev.csv"), "test_file": str(data_dir / "test.csv"),
              "num_train_epochs": 8.0, "metric_for_best_model": "loss"}
    return {refit: train_tiny("lstm", root / f"refit-{refit}", noisy_train_file, refit=refit, **splits)
            for refit in (False, True)}


def eval_epochs(model_dir) -> list[tuple[float, float]]:
    return [(entry["epoch"], entry["eval_loss"]) for entry in
            read_json(model_dir / "trainer_state.json")["log_history"] if "eval_loss" in entry]


def test_the_refit_trains_on_validation_rows_up_to_the_epoch_validation_chose(runs):
    plain, refit = runs[False], runs[True]
    epochs = eval_epochs(refit)
    chosen = min(epochs, key=lambda pair: pair[1])[0]
    assert chosen < epochs[-1][0]  # the chosen epoch is not simply the last one
    record = read_json(refit / "training_info.json")["refit"]
    assert record["epochs"] == chosen and record["epochs_completed"] == chosen
    assert record["train_rows"] == 120 + 40
    assert read_json(plain / "training_info.json")["refit"] is None
    # the selection run is the plain run, epoch for epoch: same seed, same start
    assert eval_epochs(plain) == epochs
    assert read_json(refit / "eval_results.json") == read_json(plain / "eval_results.json")
    plain_test = read_json(plain / "test_results.json")
    assert record["selection_run_test"] == {"accuracy": plain_test["accuracy"], "macro_f1": plain_test["macro_f1"]}


def test_the_saved_model_is_the_refit_one_and_its_test_figures_measure_it(runs, data_dir):
    plain, refit = (load_file(runs[flag] / "model.safetensors") for flag in (False, True))
    assert plain.keys() == refit.keys() and any(not torch.equal(plain[name], refit[name]) for name in plain)
    classifier = load_classifier(runs[True], "cpu")
    rows = [line.rsplit(",", 1) for line in (data_dir / "test.csv").read_text().splitlines()[1:]]
    predicted = classify_logits(classifier, [text for text, _ in rows]).argmax(-1).tolist()
    accuracy = sum(classifier.label_names[p] == label for p, (_, label) in zip(predicted, rows)) / len(rows)
    assert accuracy == pytest.approx(read_json(runs[True] / "test_results.json")["accuracy"])


def test_the_card_says_which_model_each_figure_measures(runs):
    card = (runs[True] / "README.md").read_text(encoding="utf-8")
    epochs = read_json(runs[True] / "training_info.json")["refit"]["epochs"]
    assert f"Validation chose epoch {epochs:g}" in card and "(160 examples)" in card
    assert "Of the selection run's model, before the refit" in card and "Of the saved (refit) model" in card
    assert "(a refit)" in card and "(a refit)" not in (runs[False] / "README.md").read_text(encoding="utf-8")


def test_the_lstm_refits_by_default_and_transformers_do_not():
    assert default_refit("lstm") and not default_refit("transformer")


def test_a_distilled_refit_gives_the_validation_rows_the_teachers_logits(tmp_path, data_dir, transformer_dir):
    output = train_tiny("lstm", tmp_path / "student", data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                        teacher_model_dir=str(transformer_dir), num_train_epochs=3.0, refit=True)
    assert read_json(output / "training_info.json")["refit"]["train_rows"] == 120 + 40


def test_resuming_a_run_that_kept_no_initial_weights_is_refused_before_training(tmp_path, data_dir):
    output_dir = tmp_path / "interrupted"
    checkpoint = checkpoints_dir(str(output_dir)) / "checkpoint-8"  # as a run started with --no-refit leaves it
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 8}), encoding="utf-8")
    with pytest.raises(ConfigError, match="--no-refit"):
        train_tiny("lstm", output_dir, data_dir / "train.csv", resume=True, refit=True)
    assert not output_dir.exists()
