"""Fine-tuning a sentence-embedding encoder with the head it was trained for: mean pooling of the token states."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification, BertModel

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.loading import classify_logits, load_classifier
from textsvc.models.pooled_encoder import PooledEncoderForSequenceClassification

from conftest import train_tiny


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sentence_encoder_dir(tmp_path_factory, transformer_dir):
    """A tiny "pretrained" encoder laid out as sentence-transformers ships one: a bare BertModel (with its
    pooler), its tokenizer, and a 1_Pooling/config.json that says the model was trained to mean-pool."""
    directory = tmp_path_factory.mktemp("sentence-encoder") / "encoder"
    BertModel.from_pretrained(transformer_dir).save_pretrained(directory)
    AutoTokenizer.from_pretrained(transformer_dir).save_pretrained(directory)
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    return directory


@pytest.fixture(scope="module")
def mean_pooled_dir(tmp_path_factory, sentence_encoder_dir, data_dir):
    output_dir = tmp_path_factory.mktemp("pooled-run") / "tiny-pooled"
    return train_tiny("transformer", output_dir, data_dir / "train.csv", model_name_or_path=str(sentence_encoder_dir),
                      validation_file=str(data_dir / "dev.csv"), test_file=str(data_dir / "test.csv"),
                      classifier_pooling="auto", num_train_epochs=3.0)


def test_auto_pooling_follows_the_sentence_transformers_config(mean_pooled_dir, sentence_encoder_dir):
    config = read_json(mean_pooled_dir / "config.json")
    assert config["model_type"] == "textsvc_pooled_encoder" and config["pooling"] == "mean"
    assert config["encoder_config"]["model_type"] == "bert"
    assert read_json(mean_pooled_dir / "training_info.json")["hyperparameters"]["classifier_pooling"] == "mean"
    assert "classifier_pooling | mean" in (mean_pooled_dir / "README.md").read_text()
    # the pretrained weights were loaded, not left at their initial values; the unused pooler was dropped
    weights = load_file(mean_pooled_dir / "model.safetensors")
    assert not any(".pooler." in name for name in weights)
    pretrained = load_file(sentence_encoder_dir / "model.safetensors")
    name = next(key for key in pretrained if key.endswith("word_embeddings.weight"))
    moved = (weights[f"encoder.{name}"] - pretrained[name]).abs().max().item()
    assert 0 < moved < 0.5, "fine-tuning starts from the pretrained embeddings and changes them a little"


def test_mean_pooled_model_learns_and_reloads(mean_pooled_dir, data_dir):
    assert read_json(mean_pooled_dir / "test_results.json")["accuracy"] >= 0.9
    model = AutoModelForSequenceClassification.from_pretrained(mean_pooled_dir).eval()
    assert type(model) is PooledEncoderForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained(mean_pooled_dir)
    rows = [line.rsplit(",", 1) for line in (data_dir / "dev.csv").read_text().splitlines()[1:]]
    texts, labels = [text for text, _ in rows], torch.tensor([0 if label == "neg" else 1 for _, label in rows])
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    saved = read_json(mean_pooled_dir / "eval_results.json")
    assert (logits.argmax(-1) == labels).float().mean().item() == pytest.approx(saved["accuracy"])
    assert torch.nn.functional.cross_entropy(logits, labels).item() == pytest.approx(saved["loss"], abs=1e-4)


def test_padding_does_not_change_a_mean_pooled_prediction(mean_pooled_dir):
    classifier = load_classifier(mean_pooled_dir, "cpu")
    texts = ["a lovely show", "the plot was awful and boring, so very bad, really quite dreadful", ""]
    together = classify_logits(classifier, texts)
    alone = torch.cat([classify_logits(classifier, [text]) for text in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert classifier.max_length == 32


def test_cls_pooling_keeps_the_architectures_own_head(tmp_path, sentence_encoder_dir, data_dir):
    output_dir = train_tiny("transformer", tmp_path / "cls", data_dir / "train.csv",  # cls: the default
                            model_name_or_path=str(sentence_encoder_dir), num_train_epochs=1.0)
    assert type(AutoModelForSequenceClassification.from_pretrained(output_dir)) is BertForSequenceClassification
    assert read_json(output_dir / "training_info.json")["hyperparameters"]["classifier_pooling"] == "cls"


def test_unknown_pooling_is_refused():
    from textsvc.config.training import ClassifierModelConfig
    from textsvc.errors import ConfigError

    with pytest.raises(ConfigError, match="classifier_pooling"):
        ClassifierModelConfig(arch="transformer", classifier_pooling="max")
