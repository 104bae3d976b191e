"""Serving in reduced precision: `dtype` picks what the models run in, /models says it, and answers stay close."""

from __future__ import annotations

import shutil

import pytest
import torch

from textsvc.devices import cpu_has_native_bf16, pick_dtype
from textsvc.errors import ConfigError
from textsvc.loading import classify_logits, load_classifier
from textsvc.serving.api import create_app


def test_auto_is_bf16_only_where_the_hardware_computes_it():
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError):
        pick_dtype("float16", torch.device("cpu"))


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_bf16_serving_keeps_the_labels_and_scores_close(arch, lstm_dir, transformer_dir, tmp_path):
    model_dir = lstm_dir if arch == "lstm" else transformer_dir
    shutil.copytree(model_dir, tmp_path / "models" / "model")  # a symlink out of models_dir is not served
    client = create_app({"models_dir": str(tmp_path / "models"), "device": "cpu", "dtype": "bfloat16"}).test_client()
    assert client.get("/models/model").get_json()["dtype"] == "bfloat16"
    texts = ["a good great film", "an awful boring plot", "the movie"]
    served = client.post("/classify", json={"inputs": texts, "parameters": {"top_k": None}}).get_json()
    float32 = load_classifier(model_dir, "cpu")
    reference, labels = classify_logits(float32, texts).softmax(-1), float32.label_names
    for scores, row in zip(served, reference):
        by_label = {item["label"]: item["score"] for item in scores}
        assert max(by_label, key=by_label.get) == labels[int(row.argmax())]
        assert [by_label[label] for label in labels] == pytest.approx(row.tolist(), abs=0.02)
