"""The serving engine: model discovery, dynamic batching, classification scores and token-event generation."""

from __future__ import annotations

import threading
import time

import pytest

from textsvc.batching import DynamicBatcher
from textsvc.config import SamplingConfig, ServingConfig
from textsvc.engine import Engine, GenerationStream, discover_models
from textsvc.errors import ConfigError, OverloadedError, RequestError
from textsvc.inference import classify_logits, load_classifier
from textsvc.sampling import generate


@pytest.fixture(scope="module")
def engine(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", max_wait_ms=1))
    engine.load()
    yield engine
    engine.close()


def test_discovery_skips_hidden_checkpoints_and_non_models(models_dir, tmp_path, lstm_dir):
    assert sorted(discover_models(models_dir)) == ["sentiment-bert", "sentiment-lstm", "tiny-gpt", "tiny-lstm-lm"]
    (tmp_path / "outside").symlink_to(lstm_dir)  # a link that leaves the folder is not served
    assert discover_models(tmp_path) == {}


def test_batcher_gathers_concurrent_items_into_one_call():
    calls = []
    batcher = DynamicBatcher(lambda items: calls.append(list(items)) or [i * 2 for i in items],
                             max_batch_size=8, max_wait_ms=200, max_queue_size=100)
    futures = []
    threads = [threading.Thread(target=lambda i=i: futures.extend(batcher.submit_all([i]))) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(f.result(timeout=5) for f in futures) == [0, 2, 4, 6, 8]
    assert max(len(call) for call in calls) > 1
    batcher.close()


def test_batcher_refuses_when_full_and_passes_errors_on():
    gate = threading.Event()

    def predict(items):
        gate.wait(5)
        raise ValueError("boom")

    batcher = DynamicBatcher(predict, max_batch_size=1, max_wait_ms=0, max_queue_size=2)
    first = batcher.submit_all([1])[0]
    time.sleep(0.05)  # the worker takes the first item and blocks in predict
    batcher.submit_all([2, 3])
    with pytest.raises(OverloadedError):
        batcher.submit_all([4])
    gate.set()
    with pytest.raises(ValueError):
        first.result(timeout=5)
    batcher.close()


def test_classify_matches_batch_inference(engine, models_dir):
    texts = ["good great film", "awful boring plot", "the"]
    results = engine.classify("sentiment-lstm", texts)
    expected = classify_logits(load_classifier(models_dir / "sentiment-lstm", "cpu"), texts).softmax(-1)
    for row, probabilities in zip(results, expected):
        assert [r["score"] for r in row] == sorted((r["score"] for r in row), reverse=True)
        by_label = {r["label"]: r["score"] for r in row}
        assert [by_label["neg"], by_label["pos"]] == pytest.approx(probabilities.tolist(), abs=1e-5)
    assert sum(r["score"] for r in results[0]) == pytest.approx(1.0)


def test_classify_top_k_sigmoid_and_truncation(engine):
    assert len(engine.classify("sentiment-bert", ["good"], top_k=1)[0]) == 1
    scores = [r["score"] for r in engine.classify("sentiment-bert", ["good"], function_to_apply="sigmoid")[0]]
    assert all(0 < s < 1 for s in scores) and sum(scores) != pytest.approx(1.0)
    long_text = "good " * 200
    assert len(engine.classify("sentiment-bert", [long_text])[0]) == 2  # truncated by default
    with pytest.raises(RequestError) as error:
        engine.classify("sentiment-bert", [long_text], truncation=False)
    assert error.value.code == "input_too_long"


def test_model_lookup_errors(engine):
    with pytest.raises(RequestError) as error:
        engine.model("tiny-gpt", "classifier")
    assert error.value.code == "unknown_model" and error.value.http_status == 404
    with pytest.raises(RequestError) as error:
        engine.model(None, "classifier")  # two classifiers and no default
    assert error.value.code == "invalid_parameter"


@pytest.mark.parametrize("name", ["tiny-lstm-lm", "tiny-gpt"])
def test_token_events_join_to_the_generated_text(engine, name):
    config = SamplingConfig(max_new_tokens=20, temperature=0.8, seed=3, stop=("moon",))
    served = engine.admit(name)
    try:
        tokens = GenerationStream(served, "the cat", config, engine.telemetry)
        events = list(tokens)
    finally:
        served.lock.release()
    reference = generate(served.loaded.model, served.loaded.tokenizer, "the cat", config)
    assert "".join(e.text for e in events) == reference.text == tokens.result.text
    assert [e.id for e in events] == list(reference.token_ids)
    assert [e.last for e in events] == [False] * (len(events) - 1) + [True]
    assert all(e.logprob <= 0 for e in events)


def test_stream_stops_when_the_client_is_gone(engine):
    served = engine.admit("tiny-lstm-lm")
    try:
        tokens = GenerationStream(served, "", SamplingConfig(max_new_tokens=200, temperature=0), engine.telemetry,
                                  should_stop=lambda: True)
        events = list(tokens)
    finally:
        served.lock.release()
    assert tokens.cancelled and tokens.result is None and len(events) <= 2


def test_generator_queue_limit(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", max_queue_size=1, warmup=False))
    engine.load()
    served = engine.admit("tiny-gpt")  # held: the next caller waits, the one after is refused
    waiter = threading.Thread(target=lambda: engine.admit("tiny-gpt").lock.release())
    waiter.start()
    deadline = time.monotonic() + 5
    while served.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OverloadedError):
        engine.admit("tiny-gpt")
    served.lock.release()
    waiter.join(5)
    assert not served.lock.locked()
    engine.close()


def test_not_ready_before_load(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir)))
    with pytest.raises(OverloadedError) as error:
        engine.classify(None, ["x"])
    assert error.value.code == "not_ready"


def test_a_default_model_must_exist(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), default_classifier="tiny-gpt", warmup=False))
    with pytest.raises(ConfigError) as error:
        engine.load()
    assert error.value.field == "default_classifier" and engine.load_error is error.value
    engine.close()
