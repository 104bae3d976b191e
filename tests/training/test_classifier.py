"""Train -> save -> load -> predict for both architectures, and what a finished model directory holds."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.cli import main
from textsvc.loading import classify_logits, load_classifier
from textsvc.models.lstm import LSTMForSequenceClassification

from conftest import LSTM, TRAINING, as_flags, sentiment_rows, train_tiny, write_rows

MODEL_CLASSES = {"lstm": LSTMForSequenceClassification, "transformer": BertForSequenceClassification}


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_model_dir_is_complete(model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_results.json",
                 "test_results.json", "training_info.json"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("*.bin")), "weights are saved as safetensors only"
    assert read_json(model_dir / "config.json")["id2label"] == {"0": "neg", "1": "pos"}
    assert read_json(model_dir / "eval_results.json")["num_samples"] == 40
    assert read_json(model_dir / "test_results.json")["num_samples"] == 40


def test_no_staging_or_checkpoint_dirs_left(model_dir):
    assert [path.name for path in model_dir.parent.iterdir()] == [model_dir.name]


def test_lstm_learns_separable_data(lstm_dir):
    assert read_json(lstm_dir / "eval_results.json")["accuracy"] >= 0.9
    assert read_json(lstm_dir / "test_results.json")["accuracy"] >= 0.9
    classifier = load_classifier(lstm_dir, "cpu")
    logits = classify_logits(classifier, ["what a wonderful superb film", "the plot was awful and boring"])
    assert [classifier.label_names[i] for i in logits.argmax(-1)] == ["pos", "neg"]


def test_predict_after_load(model_dir):
    classifier = load_classifier(model_dir, "cpu")
    texts = ["a lovely show", "so bad", "", "word " * 100]  # empty and over-long inputs too
    logits = classify_logits(classifier, texts, batch_size=3)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    alone = classify_logits(classifier, ["", ""])  # a batch of empty texts only
    torch.testing.assert_close(alone, logits[2:3].expand(2, 2))
    assert classifier.label_names == ["neg", "pos"]


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_auto_class_loads_weights_and_reproduces_eval(arch, request, data_dir):
    model_dir = request.getfixturevalue(f"{arch}_dir")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert type(model) is MODEL_CLASSES[arch]
    state = model.state_dict()
    for name, tensor in load_file(model_dir / "model.safetensors").items():
        assert torch.equal(state[name], tensor), name

    direct = MODEL_CLASSES[arch].from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [line.rsplit(",", 1) for line in (data_dir / "dev.csv").read_text().splitlines()[1:]]
    texts, labels = [text for text, _ in rows], torch.tensor([0 if label == "neg" else 1 for _, label in rows])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        assert torch.equal(logits, direct(**batch).logits)
    saved = read_json(model_dir / "eval_results.json")
    assert (logits.argmax(-1) == labels).float().mean().item() == pytest.approx(saved["accuracy"])
    assert torch.nn.functional.cross_entropy(logits, labels).item() == pytest.approx(saved["loss"], abs=1e-4)


def test_cli_trains_on_integer_labels_with_names_and_carves_validation(tmp_path, capsys):
    rows = [{"idx": i, "sentence": row["text"], "label": int(row["label"] == "pos")}
            for i, row in enumerate(sentiment_rows(60, seed=3))]
    train_file = write_rows(tmp_path / "data" / "train.jsonl", rows)
    output_dir = tmp_path / "int-labels"
    settings = {**TRAINING, **LSTM, "num_train_epochs": 2.0, "label_names": ("neg", "pos"),
                "validation_split_percentage": 20.0}
    status = main(["train-classifier", "--train_file", str(train_file), "--output_dir", str(output_dir),
                   *as_flags(settings)])
    assert status == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["output_dir"] == str(output_dir) and 0 <= printed["eval_accuracy"] <= 1
    assert read_json(output_dir / "config.json")["id2label"] == {"0": "neg", "1": "pos"}
    info = read_json(output_dir / "training_info.json")
    assert info["validation_carved_from_train"] is True
    assert info["split_sizes"] == {"train": 48, "validation": 12}
    assert info["label_counts"]["validation"] == {"neg": 6, "pos": 6}
    assert not (tmp_path / "int-labels.checkpoints").exists()


def test_selecting_on_validation_loss_keeps_the_lowest_loss_epoch(tmp_path, data_dir):
    # a quarter of the training labels flipped: memorising them drives the validation loss up again after its low
    rows = [{**row, "label": {"neg": "pos", "pos": "neg"}[row["label"]] if i % 4 == 0 else row["label"]}
            for i, row in enumerate(sentiment_rows(120, seed=0))]
    output_dir = train_tiny("lstm", tmp_path / "by-loss", write_rows(tmp_path / "noisy.csv", rows),
                            validation_file=str(data_dir / "dev.csv"), num_train_epochs=12.0,
                            metric_for_best_model="loss")
    losses = [entry["eval_loss"] for entry in read_json(output_dir / "trainer_state.json")["log_history"]
              if "eval_loss" in entry]
    assert len(losses) == 12 and losses.index(min(losses)) < len(losses) - 1  # the lowest is not simply the last
    assert read_json(output_dir / "training_info.json")["best_checkpoint_metric"] == {"loss": min(losses)}
    assert read_json(output_dir / "eval_results.json")["loss"] == pytest.approx(min(losses), abs=1e-6)
    assert "early stopping on validation loss" in (output_dir / "README.md").read_text()


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_the_same_seed_trains_the_same_model_from_scratch(arch, tmp_path, data_dir):
    runs = [train_tiny(arch, tmp_path / f"run-{i}", data_dir / "train.csv", num_train_epochs=2.0) for i in (1, 2)]
    assert (runs[0] / "tokenizer.json").read_bytes() == (runs[1] / "tokenizer.json").read_bytes()
    first, second = load_file(runs[0] / "model.safetensors"), load_file(runs[1] / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
