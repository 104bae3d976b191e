"""The HTTP API through Flask's test client: every route, the response shapes, each bad request's error code."""

from __future__ import annotations

import json
import threading

import pytest

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError
from textsvc.generation.loop import generate
from textsvc.serving.api import create_app
from textsvc.serving.engine import Engine
from textsvc.serving.openapi import openapi_document

from conftest import metric

ERROR_CODES = openapi_document()["components"]["schemas"]["ErrorCode"]["enum"]  # the codes /openapi.json lists


@pytest.fixture(scope="module")
def app(models_dir):
    app = create_app({"models_dir": str(models_dir), "device": "cpu", "max_wait_ms": 1,
                      "default_classifier": "sentiment-lstm", "default_generator": "tiny-gpt"})
    yield app
    app.extensions["textsvc"].close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def events(response) -> list:
    """The JSON payloads of a server-sent event stream (and a trailing '[DONE]' as text)."""
    lines = [line[len("data: "):] for line in response.get_data(as_text=True).split("\n\n") if line]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]



def test_health_ready_models_and_openapi(client):
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/ready").json == {"status": "ready", "models": 4}
    listed = {m["name"]: m for m in client.get("/models").json["models"]}
    assert set(listed) == {"sentiment-lstm", "sentiment-bert", "tiny-lstm-lm", "tiny-gpt"}
    assert listed["sentiment-lstm"]["kind"] == "classifier" and listed["sentiment-lstm"]["labels"] == ["neg", "pos"]
    assert client.get("/models/tiny-gpt").json["kind"] == "generator"
    for entry in listed.values():
        assert entry["parameters"] > 0 and entry["dtype"] == "float32" and entry["device"] == "cpu"
    assert [m["id"] for m in client.get("/v1/models").json["data"]] == ["tiny-gpt", "tiny-lstm-lm"]
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.") and "/generate_stream" in document["paths"]


def test_card_as_markdown_and_metadata(client):
    card = client.get("/models/sentiment-bert/card").json
    assert card["metadata"]["pipeline_tag"] == "text-classification"
    assert card["markdown"].startswith("---\n") and "# " in card["markdown"]
    assert client.get("/models/tiny-gpt/card").json["metadata"]["pipeline_tag"] == "text-generation"


def test_classify_shape(client):
    single = client.post("/classify", json={"inputs": "good great excellent"}).json
    assert len(single) == 1 and [r["label"] for r in single[0]][0] == "pos"
    assert single[0][0]["score"] >= single[0][1]["score"]
    several = client.post("/classify", json={"inputs": ["awful bad", "lovely"], "model": "sentiment-bert",
                                             "parameters": {"top_k": 1}}).json
    assert [len(row) for row in several] == [1, 1]


def test_generate_matches_the_sampler(app, client):
    body = {"inputs": "the cat", "parameters": {"max_new_tokens": 12, "details": True}}
    answer = client.post("/generate", json=body).json
    served = app.extensions["textsvc"].models["tiny-gpt"]
    expected = generate(served.loaded.model, served.loaded.tokenizer, "the cat",
                        SamplingConfig(max_new_tokens=12, temperature=0))  # TGI: greedy unless asked to sample
    assert answer["generated_text"] == expected.text
    assert answer["details"]["generated_tokens"] == len(expected.token_ids)
    assert answer["details"]["finish_reason"] in ("length", "eos_token", "stop_sequence")
    full = client.post("/generate", json={**body, "parameters": {"max_new_tokens": 12, "return_full_text": True}})
    assert full.json["generated_text"] == "the cat" + expected.text


@pytest.mark.parametrize("model", ["tiny-gpt", "tiny-lstm-lm"])
def test_stream_joins_to_the_full_text(client, model):
    parameters = {"max_new_tokens": 16, "do_sample": True, "seed": 7, "details": True}
    whole = client.post("/generate", json={"inputs": "a dog", "model": model, "parameters": parameters}).json
    response = client.post("/generate_stream", json={"inputs": "a dog", "model": model, "parameters": parameters})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    received = events(response)
    assert "".join(e["token"]["text"] for e in received) == whole["generated_text"]
    assert [e["generated_text"] for e in received[:-1]] == [None] * (len(received) - 1)
    assert received[-1]["generated_text"] == whole["generated_text"]
    assert received[-1]["details"]["generated_tokens"] == len(received)
    assert set(received[0]["token"]) == {"id", "text", "logprob", "special"}


def test_openai_completions(client):
    body = {"model": "tiny-lstm-lm", "prompt": "my friend", "max_tokens": 10, "temperature": 0}
    answer = client.post("/v1/completions", json=body).json
    assert answer["object"] == "text_completion" and answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] <= 10
    chunks = events(client.post("/v1/completions", json={**body, "stream": True}))
    assert chunks[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == answer["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == answer["choices"][0]["finish_reason"]


def test_stream_interval_groups_a_streams_tokens_into_fewer_writes(models_dir):
    with pytest.raises(ConfigError, match="stream_interval"):
        ServingConfig(stream_interval=0)
    app = create_app({"models_dir": str(models_dir), "device": "cpu", "stream_interval": 4, "warmup": False})
    client = app.test_client()
    body = {"model": "tiny-gpt", "prompt": "the cat", "max_tokens": 13, "temperature": 0.9, "seed": 5}
    answer = client.post("/v1/completions", json=body).json
    response = client.post("/v1/completions", json={**body, "stream": True}, buffered=False)
    writes = list(response.response)
    response.close()
    app.extensions["textsvc"].close()
    chunks = [json.loads(line[len("data: "):]) for write in writes for line in write.decode().split("\n\n")
              if line and line != "data: [DONE]"]
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == answer["choices"][0]["text"]
    tokens = answer["usage"]["completion_tokens"]
    assert tokens >= 9  # enough for groups to show: one write a token would be tokens + 2 writes
    # the first token alone, then groups of 4, each one write; the finish chunk and [DONE] may take one more
    assert len(writes) <= 1 + -(-(tokens - 1) // 4) + 1


def test_metrics_count_requests_and_tokens(client):
    before = metric(client, "textsvc_requests_total", route="/classify", status="200")
    client.post("/classify", json={"inputs": "good"})
    assert metric(client, "textsvc_requests_total", route="/classify", status="200") == before + 1
    client.post("/generate", json={"inputs": "the", "parameters": {"max_new_tokens": 3}})
    assert metric(client, "textsvc_generated_tokens_total", model="tiny-gpt") >= 1
    assert metric(client, "textsvc_time_to_first_token_seconds_count", model="tiny-gpt") >= 1
    assert metric(client, "textsvc_batch_size_count", model="sentiment-lstm") >= 1


BAD_REQUESTS = [
    ("post", "/classify", {"data": "{not json", "content_type": "application/json"}, 400, "malformed_json"),
    ("post", "/classify", {"data": "good", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ("post", "/classify", {"data": b'{"inputs": "\xff"}', "content_type": "application/json"}, 400,
     "malformed_json"),
    ("post", "/classify", {"data": '{"inputs": "\\ud800 good"}', "content_type": "application/json"}, 400,
     "malformed_json"),
    ("post", "/classify", {"data": "[" * 50000 + "]" * 50000, "content_type": "application/json"}, 400,
     "malformed_json"),
    ("post", "/classify", {"json": ["good"]}, 400, "invalid_type"),
    ("post", "/classify", {"json": {"inputs": 3}}, 400, "invalid_type"),
    ("post", "/classify", {"json": {"inputs": ["ok", None]}}, 400, "invalid_type"),
    ("post", "/classify", {"json": {"inputs": "  "}}, 400, "empty_input"),
    ("post", "/classify", {"json": {"inputs": []}}, 400, "empty_input"),
    ("post", "/classify", {"json": {"inputs": ["good"] * 65}}, 400, "too_many_inputs"),
    ("post", "/classify", {"json": {"inputs": "good " * 300, "parameters": {"truncation": False}}}, 400,
     "input_too_long"),
    ("post", "/classify", {"json": {"inputs": "good", "parameters": {"top_k": 0}}}, 400, "invalid_parameter"),
    ("post", "/classify", {"json": {"inputs": "good", "parameters": {"top_k": "2"}}}, 400, "invalid_parameter"),
    ("post", "/classify", {"json": {"inputs": "good", "parameters": {"bogus": 1}}}, 400, "invalid_parameter"),
    ("post", "/classify", {"json": {"inputs": "good", "parameters": [1]}}, 400, "invalid_parameter"),
    ("post", "/classify", {"json": {"inputs": "good", "model": 5}}, 400, "invalid_parameter"),
    ("post", "/classify", {"json": {"inputs": "good", "model": "nope"}}, 404, "unknown_model"),
    ("post", "/classify", {"json": {"inputs": "good", "model": "tiny-gpt"}}, 404, "unknown_model"),
    ("post", "/generate", {"json": {"inputs": 5}}, 400, "invalid_type"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"max_new_tokens": 100000}}}, 400,
     "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"max_new_tokens": "ten"}}}, 400,
     "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"temperature": -1}}}, 400, "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"stop": [1]}}}, 400, "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"seed": -1}}}, 400, "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "model": "sentiment-lstm"}}, 404, "unknown_model"),
    ("post", "/generate", {"json": {"inputs": "the cat " * 40, "model": "tiny-gpt"}}, 400, "input_too_long"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"truncate": 0}}}, 400, "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"watermark": True}}}, 400, "invalid_parameter"),
    ("post", "/generate", {"json": {"inputs": "x", "parameters": {"best_of": 2}}}, 400, "invalid_parameter"),
    ("post", "/generate_stream", {"json": {"inputs": "x", "parameters": {"top_p": 0}}}, 400, "invalid_parameter"),
    ("post", "/v1/completions", {"json": {"prompt": 3}}, 400, "invalid_type"),
    ("post", "/v1/completions", {"json": {"prompt": "x", "n": 2}}, 400, "invalid_parameter"),
    ("post", "/v1/completions", {"json": {"prompt": "x", "max_tokens": 0}}, 400, "invalid_parameter"),
    ("get", "/classify", {}, 405, "method_not_allowed"),
    ("get", "/no/such/route", {}, 404, "not_found"),
    ("get", "/static/index.html", {}, 404, "not_found"),  # the page only at /, with its CSP header
    ("get", "/models/nope", {}, 404, "unknown_model"),
    ("get", "/models/nope/card", {}, 404, "unknown_model"),
]


@pytest.mark.parametrize("method, path, kwargs, status, code", BAD_REQUESTS,
                         ids=[f"{row[1]}-{row[4]}-{i}" for i, row in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_their_code(client, method, path, kwargs, status, code):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    if path in ("/generate", "/generate_stream"):  # TGI's shape: a string error, its type, and textsvc's code
        assert isinstance(body["error"], str) and body["code"] == code
        assert body["error_type"] == ("overloaded" if status == 503 else "validation")
    elif path.startswith("/v1/"):  # OpenAI's shape
        assert body["error"]["code"] == code and body["error"]["type"] == "invalid_request_error"
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert body["error"]["code"] == code
    assert code in ERROR_CODES


@pytest.fixture(scope="module")
def strict_client(models_dir):
    app = create_app({"models_dir": str(models_dir), "device": "cpu", "api_keys": ("s3cret",), "max_queue_size": 1,
                      "max_content_length": 2000, "default_classifier": "sentiment-bert", "warmup": False})
    yield app.test_client()
    app.extensions["textsvc"].close()


def test_api_key_required_on_inference_routes_only(strict_client):
    for path, body in (("/classify", {"inputs": "good"}), ("/generate", {"inputs": "a", "model": "tiny-gpt"})):
        code = (lambda answer: answer["code"]) if path == "/generate" else (lambda answer: answer["error"]["code"])
        refused = strict_client.post(path, json=body)
        assert refused.status_code == 401 and code(refused.json) == "unauthorized"
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = strict_client.post(path, json=body, headers={"Authorization": "Bearer nope"})
        assert code(wrong.json) == "unauthorized"
        assert strict_client.post(path, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert strict_client.get("/models").status_code == 200


def test_overloaded_and_payload_too_large(strict_client):
    auth = {"Authorization": "Bearer s3cret"}
    busy = strict_client.post("/classify", json={"inputs": ["good", "bad"]}, headers=auth)  # 2 texts, queue of 1
    assert busy.status_code == 503 and busy.json["error"]["code"] == "overloaded"
    assert busy.headers["Retry-After"] == "1"
    big = strict_client.post("/classify", json={"inputs": "good " * 1000}, headers=auth)
    assert big.status_code == 413 and big.json["error"]["code"] == "payload_too_large"


def test_ready_is_503_until_loaded(models_dir, monkeypatch):
    release = threading.Event()
    original = Engine.load
    monkeypatch.setattr(Engine, "load", lambda self: release.wait(10) and original(self))
    app = create_app({"models_dir": str(models_dir), "load_in_background": True, "warmup": False})
    client = app.test_client()
    waiting = client.get("/ready")
    assert waiting.status_code == 503 and waiting.json["error"]["code"] == "not_ready"
    refused = client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"})
    assert refused.status_code == 503 and refused.json["error"]["code"] == "not_ready"
    assert client.get("/health").status_code == 200
    release.set()
    for _ in range(200):
        if client.get("/ready").status_code == 200:
            break
        threading.Event().wait(0.05)
    assert client.get("/ready").status_code == 200
    app.extensions["textsvc"].close()


def test_writers_page_is_served_at_root_with_its_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "/generate_stream" in response.get_data(as_text=True)
