"""The ONNX Runtime path for classifiers: the export equals the torch model, is made once per weights file, and the
engine picks it where it should (the CPU, float32, models that export) and says so in /models."""

from __future__ import annotations

import shutil

import pytest
import torch

from textsvc.config.serving import ServingConfig, textsvc_home
from textsvc.devices import classifier_batch_tokens, cpu_has_native_bf16, pick_classifier_backend
from textsvc.errors import ConfigError
from textsvc.loading import classify_logits, load_classifier
from textsvc.onnx_classifier import OnnxSession, export_key, onnx_session, quantized_export
from textsvc.serving.api import create_app
from textsvc.serving.engine import Engine

CACHE = textsvc_home() / "onnx"  # the session's (conftest's TEXTSVC_HOME), shared with the served models' exports
TEXTS = ["good great film", "awful boring plot with a long and winding sentence that goes on", "the", ""]


def test_onnx_logits_equal_torch_logits_on_padded_batches(transformer_dir):
    loaded = load_classifier(transformer_dir, "cpu")
    expected = classify_logits(loaded, TEXTS)
    loaded.session = onnx_session(loaded.model, transformer_dir, CACHE)
    assert loaded.backends == {"single_text": "onnxruntime", "batches": "onnxruntime"}  # a float32 model
    assert torch.allclose(classify_logits(loaded, TEXTS), expected, atol=1e-4)
    assert torch.allclose(classify_logits(loaded, TEXTS[1:2]), expected[1:2], atol=1e-4)  # a batch of one


def test_texts_shared_among_single_threaded_callers_equal_lone_passes(transformer_dir):
    loaded = load_classifier(transformer_dir, "cpu")
    onnx_session(loaded.model, transformer_dir, CACHE)  # makes the export
    export = CACHE / export_key(transformer_dir) / "model.onnx"
    rows = loaded.encode(TEXTS * 3)
    lone = OnnxSession(export, threads=1)
    expected = torch.cat([lone.logits_each([row]) for row in rows])
    shared = OnnxSession(export, threads=3)  # two helpers beside the caller, whatever the machine's cores
    assert torch.allclose(shared.logits_each(rows), expected, atol=1e-5)  # in the rows' order
    assert torch.allclose(shared.logits_each(rows[:2]), expected[:2], atol=1e-5)  # fewer rows than callers
    with pytest.raises(Exception, match="indices|out of bounds|idx"):  # a token id past the vocabulary, on a helper
        shared.logits_each([*rows, [10**9]])
    assert torch.allclose(shared.logits_each(rows), expected, atol=1e-5)  # and the session still serves


def test_export_is_made_once_per_weights_file(transformer_dir, tmp_path):
    loaded = load_classifier(transformer_dir, "cpu")
    onnx_session(loaded.model, transformer_dir, CACHE)
    export = CACHE / export_key(transformer_dir) / "model.onnx"
    made = export.stat().st_mtime_ns
    onnx_session(loaded.model, transformer_dir, CACHE)
    assert export.stat().st_mtime_ns == made and list(export.parent.iterdir()) == [export]
    changed = tmp_path / "changed"
    shutil.copytree(transformer_dir, changed)
    (changed / "config.json").write_text((changed / "config.json").read_text().replace("}", ', "note": 1}', 1))
    assert export_key(changed) != export_key(transformer_dir)


def test_int8_copy_is_made_once_beside_the_export_and_stays_close(transformer_dir):
    loaded = load_classifier(transformer_dir, "cpu")
    expected = classify_logits(loaded, TEXTS)
    loaded.session = onnx_session(loaded.model, transformer_dir, CACHE, quantize="int8")
    export = CACHE / export_key(transformer_dir) / "model.onnx"
    copy = export.with_name("model.int8.onnx")
    assert copy.is_file() and quantized_export(export) == copy
    made = copy.stat().st_mtime_ns
    onnx_session(loaded.model, transformer_dir, CACHE, quantize="int8")
    assert copy.stat().st_mtime_ns == made and sorted(export.parent.iterdir()) == sorted([export, copy])
    quantized = classify_logits(loaded, TEXTS)
    assert not torch.equal(quantized, expected)  # it is the int8 copy that ran
    assert torch.allclose(quantized.softmax(-1), expected.softmax(-1), atol=0.05)


def test_int8_classifiers_need_onnx_runtime_on_the_cpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert pick_classifier_backend("auto", "bfloat16", cpu, "int8") == "onnxruntime"  # whatever the dtype
    assert pick_classifier_backend("onnxruntime", "auto", cpu, "int8") == "onnxruntime"
    with pytest.raises(ConfigError, match="run in ONNX Runtime"):
        pick_classifier_backend("torch", "auto", cpu, "int8")
    with pytest.raises(ConfigError, match="needs the CPU"):
        pick_classifier_backend("auto", "auto", gpu, "int8")
    with pytest.raises(ConfigError, match="classifier_quantize"):
        ServingConfig(models_dir=".", classifier_quantize="int4")


def test_engine_serves_int8_transformers_in_onnx_runtime_and_the_lstm_in_torch(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", classifier_quantize="int8"))
    engine.load()
    try:
        bert, lstm = engine.models["sentiment-bert"].describe(), engine.models["sentiment-lstm"].describe()
        served = engine.classify("sentiment-bert", TEXTS)
        alone = [engine.classify("sentiment-bert", [text])[0] for text in TEXTS]
    finally:
        engine.close()
    assert bert["quantization"] == "int8" and set(bert["backends"].values()) == {"onnxruntime"}
    assert lstm["quantization"] == "none" and set(lstm["backends"].values()) == {"torch"}
    assert served == alone  # batches run the same int8 passes, one text at a time


def test_auto_picks_onnx_runtime_for_float32_on_the_cpu_only():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    # `auto` means bf16 on CPUs with bf16 instructions, and torch serves bf16
    assert pick_classifier_backend("auto", "auto", cpu) == ("torch" if cpu_has_native_bf16() else "onnxruntime")
    assert pick_classifier_backend("auto", "float32", cpu) == "onnxruntime"
    assert pick_classifier_backend("auto", "bfloat16", cpu) == "torch"  # reduced precision was asked for
    assert pick_classifier_backend("auto", "auto", gpu) == "torch"
    assert pick_classifier_backend("torch", "auto", cpu) == "torch"
    with pytest.raises(ConfigError, match="CPU only"):
        pick_classifier_backend("onnxruntime", "auto", gpu)


def test_classifier_batches_are_cut_smaller_on_the_cpu_unless_asked():
    assert classifier_batch_tokens(None, torch.device("cpu")) == 1024
    assert classifier_batch_tokens(None, torch.device("cuda")) == 16384
    assert classifier_batch_tokens(300, torch.device("cpu")) == 300


def test_engine_serves_transformers_through_onnx_and_the_lstm_through_torch(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", dtype="float32"))
    engine.load()
    try:
        assert set(engine.models["sentiment-bert"].describe()["backends"].values()) == {"onnxruntime"}
        # packed sequences do not export
        assert set(engine.models["sentiment-lstm"].describe()["backends"].values()) == {"torch"}
        served = engine.classify("sentiment-bert", TEXTS)
    finally:
        engine.close()
    expected = classify_logits(load_classifier(models_dir / "sentiment-bert", "cpu"), TEXTS).softmax(-1)
    for row, probabilities in zip(served, expected, strict=True):
        scores = {result["label"]: result["score"] for result in row}
        assert [scores["neg"], scores["pos"]] == pytest.approx(probabilities.tolist(), abs=1e-5)


def test_explicit_onnx_runtime_fails_the_models_that_do_not_export(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", classifier_backend="onnxruntime"))
    engine.load()
    try:
        assert "sentiment-lstm" in engine.failures and "sentiment-lstm" not in engine.models
        assert set(engine.models["sentiment-bert"].describe()["backends"].values()) == {"onnxruntime"}
    finally:
        engine.close()


def test_auto_dtype_serves_classifiers_in_float32_through_onnx_runtime_else_in_torch(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", dtype="auto"))
    engine.load()
    try:
        bert, lstm = engine.models["sentiment-bert"].describe(), engine.models["sentiment-lstm"].describe()
        budgets = [engine.models[name].batcher.max_batch_tokens for name in ("sentiment-bert", "sentiment-lstm")]
        batched = engine.classify("sentiment-bert", TEXTS)
        alone = [engine.classify("sentiment-bert", [text])[0] for text in TEXTS]
    finally:
        engine.close()
    dtype = "bfloat16" if cpu_has_native_bf16() else "float32"  # what `auto` means on this CPU
    assert bert["dtype"] == lstm["dtype"] == dtype
    assert set(bert["backends"].values()) == {"onnxruntime" if dtype == "float32" else "torch"}
    assert set(lstm["backends"].values()) == {"torch"}  # packed sequences do not export
    # unpadded ONNX Runtime passes need no token budget; torch's padded ones keep the CPU's
    assert budgets == [None if dtype == "float32" else 1024, 1024]
    for together, apart in zip(batched, alone, strict=True):  # a batch's padding moves bf16 scores by rounding only
        scores = {result["label"]: result["score"] for result in apart}
        tolerance = 1e-5 if dtype == "float32" else 2e-2
        assert all(result["score"] == pytest.approx(scores[result["label"]], abs=tolerance) for result in together)


def test_tei_info_gives_an_integer_token_budget_for_onnx_runtime_classifiers(models_dir):
    app = create_app({"models_dir": str(models_dir), "device": "cpu"})
    try:
        info = app.test_client().get("/info?model=sentiment-bert").json
        limit = app.extensions["textsvc"].models["sentiment-bert"].loaded.max_length
    finally:
        app.extensions["textsvc"].close()
    assert info["max_batch_tokens"] == info["max_batch_requests"] * limit  # no budget: the count cap at full length
