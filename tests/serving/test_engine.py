"""The serving engine: model discovery, dynamic batching, classification scores and token-event generation."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError, OverloadedError, RequestError
from textsvc.generation.loop import generate
from textsvc.loading import classify_logits, load_classifier, load_generator
from textsvc.serving.classifier_batching import DynamicBatcher
from textsvc.serving.engine import Engine, discover_models
from textsvc.serving.generator_batching import GenerationWorker


@pytest.fixture(scope="module")
def engine(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", max_wait_ms=1, dtype="float32"))
    engine.load()
    yield engine
    engine.close()


def test_discovery_skips_hidden_checkpoints_and_non_models(models_dir, tmp_path, lstm_dir):
    assert sorted(discover_models(models_dir)) == ["sentiment-bert", "sentiment-lstm", "tiny-gpt", "tiny-lstm-lm"]
    (tmp_path / "outside").symlink_to(lstm_dir)  # a link that leaves the folder is not served
    assert discover_models(tmp_path) == {}
    with pytest.raises(ConfigError, match="models_dir"):
        discover_models(None)


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
    config = SamplingConfig(max_new_tokens=20, temperature=0.8, seed=3, stop=("moon",), logprobs=True)
    job = engine.submit(name, "the cat", config)
    events = list(job)
    loaded = engine.models[name].loaded
    reference = generate(loaded.model, loaded.tokenizer, "the cat", config)
    assert "".join(e.text for e in events) == reference.text == job.result.text
    assert [e.id for e in events] == list(reference.token_ids)
    assert [e.last for e in events] == [False] * (len(events) - 1) + [True]
    assert all(e.logprob <= 0 for e in events)


def test_token_events_carry_log_probabilities_only_when_asked(engine):
    plain = engine.submit("tiny-gpt", "the cat", SamplingConfig(max_new_tokens=6, temperature=0))
    assert [e.logprob for e in plain] == [None] * len(plain.result.token_ids) and plain.result.logprobs is None
    asked = engine.submit("tiny-gpt", "the cat", SamplingConfig(max_new_tokens=6, temperature=0, logprobs=True))
    events = list(asked)
    assert [lp.logprob for lp in asked.result.logprobs] == [e.logprob for e in events]
    assert asked.result.token_ids == plain.result.token_ids


def test_generation_stops_when_the_client_is_gone(engine):
    job = engine.submit("tiny-lstm-lm", "", SamplingConfig(max_new_tokens=200, temperature=0),
                        should_stop=lambda: True)
    events = list(job)
    assert job.result is None and len(events) <= 1


PROMPTS = ["the cat", "my friend sees the dog", "", "a", "the moon is bright"]


@pytest.mark.parametrize("name", ["tiny-lstm-lm", "tiny-gpt"])
def test_concurrent_generations_share_batches_and_match_one_at_a_time(models_dir, name):
    sizes = []
    loaded = load_generator(models_dir / name, "cpu")
    worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16,
                              on_batch=sizes.append)
    # each row with settings of its own: greedy, top-k, top-p, a repetition penalty
    configs = [SamplingConfig(max_new_tokens=8 + 2 * i, temperature=0 if i % 2 else 0.9 + 0.1 * i, seed=i,
                              top_k=20 if i < 3 else 0, top_p=0.9 if i > 1 else 1.0,
                              repetition_penalty=1.3 if i == 4 else 1.0)
               for i in range(len(PROMPTS))]
    jobs = [worker.submit(prompt, config) for prompt, config in zip(PROMPTS, configs)]  # 5 jobs, 4 seats
    texts = ["".join(event.text for event in job) for job in jobs]
    worker.close()
    assert max(sizes) > 1  # decoding steps ran several sequences at once
    for prompt, config, job, text in zip(PROMPTS, configs, jobs, texts):
        alone = generate(loaded.model, loaded.tokenizer, prompt, config)
        assert (text, job.result.token_ids, job.result.finish_reason) == (alone.text, alone.token_ids,
                                                                          alone.finish_reason), prompt


def test_stream_interval_sends_the_first_token_alone_then_groups_with_the_same_text(models_dir):
    loaded = load_generator(models_dir / "tiny-gpt", "cpu")
    config = SamplingConfig(max_new_tokens=11, temperature=0.9, seed=3)  # seeded: the same tokens every time
    runs = {}
    for interval in (1, 4):
        worker = GenerationWorker(loaded.model, loaded.tokenizer, max_batch_size=4, max_queue_size=16,
                                  stream_interval=interval)
        jobs = [worker.submit(prompt, config) for prompt in PROMPTS]
        # at each event, how many more its group holds: a group of g events reads g - 1, ..., 0
        runs[interval] = [[(event.text, job._left_in_group, job.waiting()) for event in job] for job in jobs]
        results = [(job.result.token_ids, job.result.finish_reason) for job in jobs]
        worker.close()
        runs[interval].append(results)
    assert [[text for text, _, _ in events] for events in runs[4][:-1]] == [
        [text for text, _, _ in events] for events in runs[1][:-1]]
    assert runs[4][-1] == runs[1][-1]
    for events in runs[4][:-1]:
        starts = [left for index, (_, left, _) in enumerate(events) if index == 0 or events[index - 1][1] == 0]
        groups = [left + 1 for left in starts]
        assert groups == [1] + [4] * ((len(events) - 1) // 4) + ([(len(events) - 1) % 4] if (len(events) - 1) % 4
                                                                 else [])
        assert all(waiting for _, left, waiting in events if left)  # the reader knows the group's rest is there
    assert all(left == 0 for events in runs[1][:-1] for _, left, _ in events)


def test_prompt_and_new_tokens_must_fit_the_context(engine):
    context = engine.models["tiny-gpt"].describe()["context_length"]
    with pytest.raises(RequestError) as error:
        engine.submit("tiny-gpt", "the cat " * context, SamplingConfig(max_new_tokens=4))
    assert error.value.code == "input_too_long"
    job = engine.submit("tiny-gpt", "the cat " * context, SamplingConfig(max_new_tokens=4), truncate=8)
    assert len(list(job)) >= 1 and job.result.prompt_tokens == 8


def test_generator_queue_limit(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", max_queue_size=1,
                                  max_generation_batch_size=1, warmup=False))
    engine.load()
    busy, started = threading.Event(), threading.Event()

    def hold():  # the worker asks between steps whether the client is gone: keep it busy until released
        started.set()
        busy.wait(10)
        return False

    first = engine.submit("tiny-lstm-lm", "a", SamplingConfig(max_new_tokens=3), should_stop=hold)
    assert started.wait(10)
    second = engine.submit("tiny-lstm-lm", "b", SamplingConfig(max_new_tokens=3))  # waits: the only seat is taken
    with pytest.raises(OverloadedError):
        engine.submit("tiny-lstm-lm", "c", SamplingConfig(max_new_tokens=3))
    busy.set()
    assert list(first) and list(second) and second.result is not None
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


def test_classifiers_load_before_generators(tmp_path, models_dir, monkeypatch):
    """Whatever their names: a classifier's warm-up registers its class with transformers' output-recording registry
    before any generator compiles a decoding step that guards on it (engine._loads_late)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-gpt", root / "a-gpt")
    shutil.copytree(models_dir / "sentiment-bert", root / "b-bert")
    engine = Engine(ServingConfig(models_dir=str(root), device="cpu", warmup=False))
    order, load_one = [], engine._load_one
    monkeypatch.setattr(engine, "_load_one", lambda name, path: order.append(name) or load_one(name, path))
    engine.load()
    assert order == ["b-bert", "a-gpt"] and set(engine.models) == {"a-gpt", "b-bert"}
    engine.close()
