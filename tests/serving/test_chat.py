"""OpenAI's chat route, TGI's and TEI's /info, /tokenize and /predict, and the timing headers, through Flask's test
client: shapes, streams, and each bad request's error code."""

from __future__ import annotations

import json

import pytest

from textsvc.serving.api import create_app

from conftest import CHAT_TEMPLATE

CONVERSATION = [{"role": "system", "content": "a"}, {"role": "user", "content": "the cat"}]  # fits 32 tokens
TIMING = ("x-compute-time", "x-queue-time", "x-inference-time", "x-prompt-tokens", "x-generated-tokens")


@pytest.fixture(scope="module")
def client(chat_models_dir):
    app = create_app({"models_dir": str(chat_models_dir), "device": "cpu", "default_generator": "tiny-chat"})
    yield app.test_client()
    app.extensions["textsvc"].close()


def chunks(response) -> list:
    lines = [line[len("data: "):] for line in response.get_data(as_text=True).split("\n\n") if line]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_chat_answers_through_the_models_template(client):
    body = {"messages": CONVERSATION, "max_tokens": 8, "temperature": 0, "logprobs": True}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    choice, usage = answer.json["choices"][0], answer.json["usage"]
    assert answer.json["object"] == "chat.completion" and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # the prompt is the template's: "s: a\nu: the cat\na:"
    tokens = client.post("/tokenize", json={"inputs": "s: a\nu: the cat\na:"}).json
    assert usage["prompt_tokens"] == len(tokens)
    assert "".join(entry["token"] for entry in choice["logprobs"]["content"]) == choice["message"]["content"]
    assert all(int(answer.headers[name]) >= 0 for name in TIMING[1:])
    assert int(answer.headers["x-generated-tokens"]) == usage["completion_tokens"]


def test_chat_stream_sends_role_then_text_then_done(client):
    body = {"messages": CONVERSATION, "max_completion_tokens": 8, "temperature": 0}
    whole = client.post("/v1/chat/completions", json=body).json
    streamed = chunks(client.post("/v1/chat/completions", json={**body, "stream": True,
                                                                "stream_options": {"include_usage": True}}))
    assert streamed[-1] == "[DONE]" and streamed[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in streamed[1:-2])
    assert text == whole["choices"][0]["message"]["content"]
    assert streamed[-3]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert streamed[-2]["choices"] == [] and streamed[-2]["usage"] == whole["usage"]


@pytest.mark.parametrize("body, code, field", [
    ({"messages": CONVERSATION, "model": "tiny-gpt"}, "no_chat_template", "model"),
    ({"messages": []}, "empty_input", "messages"),
    ({"messages": "hello"}, "invalid_type", "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "invalid_parameter", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}]}, "invalid_type", "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "invalid_parameter",
     "messages[0].content"),
    ({"messages": CONVERSATION, "n": 2}, "invalid_parameter", "n"),
    ({"messages": CONVERSATION, "response_format": {"type": "json_object"}}, "invalid_parameter", "response_format"),
    ({"messages": CONVERSATION, "top_logprobs": 3}, "invalid_parameter", "top_logprobs"),
    ({"messages": CONVERSATION, "max_tokens": 0}, "invalid_parameter", "max_new_tokens"),
    ({"messages": CONVERSATION, "temperature": "hot"}, "invalid_parameter", "temperature"),
    ({"messages": CONVERSATION, "stream_options": {"include_usage": 1}}, "invalid_parameter", "include_usage"),
    ({"messages": CONVERSATION, "model": "sentiment-lstm"}, "unknown_model", "model"),
])
def test_bad_chat_requests(client, body, code, field):
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == (404 if code == "unknown_model" else 400)
    assert answer.json["error"]["code"] == code and answer.json["error"]["param"] == field


def test_chat_template_file_serves_a_model_without_one(chat_models_dir, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    app = create_app({"models_dir": str(chat_models_dir), "device": "cpu", "default_generator": "tiny-chat",
                      "chat_template": str(template), "warmup": False})
    try:
        body = {"messages": CONVERSATION, "model": "tiny-gpt", "max_tokens": 6, "temperature": 0}
        plain = app.test_client().post("/v1/chat/completions", json=body).json
        own = app.test_client().post("/v1/chat/completions", json={**body, "model": "tiny-chat"}).json
        assert plain["choices"][0]["message"] == own["choices"][0]["message"]  # the same weights, the same template
    finally:
        app.extensions["textsvc"].close()


def test_info_in_tgis_and_teis_shapes(client):
    generator = client.get("/info").json
    assert generator["model_id"] == "tiny-chat" and generator["max_total_tokens"] > generator["max_input_tokens"]
    assert generator["model_dtype"] == "float32" and generator["version"]
    classifier = client.get("/info?model=sentiment-lstm").json
    assert classifier["model_type"]["classifier"]["label2id"] == {"neg": 0, "pos": 1}
    assert classifier["max_batch_tokens"] == 1024  # the CPU's default budget (devices.classifier_batch_tokens)
    assert client.get("/info?model=nope").json["error"]["code"] == "unknown_model"


def test_tokenize(client):
    tokens = client.post("/tokenize", json={"inputs": "the cat sat"}).json
    assert "".join(token["text"] for token in tokens) == "the cat sat"
    assert tokens[0]["start"] == 0 and tokens[-1]["stop"] == len("the cat sat")
    rows = client.post("/tokenize", json={"inputs": ["good", "bad film"], "model": "sentiment-lstm"}).json
    assert len(rows) == 2 and all(isinstance(token["id"], int) for token in rows[1])
    assert client.post("/tokenize", json={"inputs": 3}).json["error"]["code"] == "invalid_type"


def test_predict_is_teis_classify(client):
    single = client.post("/predict", json={"inputs": "good great excellent"})
    assert single.json[0]["label"] == "pos" and sum(s["score"] for s in single.json) == pytest.approx(1)
    assert int(single.headers["x-prompt-tokens"]) > 0 and "x-queue-time" in single.headers
    raw = client.post("/predict", json={"inputs": ["good great", "awful bad"], "raw_scores": True}).json
    assert [row[0]["label"] for row in raw] == ["pos", "neg"] and sum(s["score"] for s in raw[0]) != pytest.approx(1)
    for body, code in (({"inputs": [["a", "b"]]}, "invalid_type"), ({"inputs": "x", "truncate": "yes"},
                                                                   "invalid_parameter"),
                       ({"inputs": "good " * 100, "truncate": False}, "input_too_long")):
        answer = client.post("/predict", json=body)
        assert answer.status_code == 400 and answer.json["code"] == code and "error_type" in answer.json


def test_timing_headers_on_the_other_inference_routes(client):
    for path, body in (("/generate", {"inputs": "the cat", "parameters": {"max_new_tokens": 3}}),
                       ("/v1/completions", {"prompt": "the cat", "max_tokens": 3}),
                       ("/classify", {"inputs": "good"})):
        answer = client.post(path, json=body)
        assert answer.status_code == 200 and all(name in answer.headers for name in TIMING), path
    assert "x-compute-time" not in client.get("/models").headers


def test_card_pictures_are_served_and_nothing_else(client):
    picture = client.get("/models/sentiment-lstm/files/confusion_matrix.png")
    assert picture.status_code == 200 and picture.mimetype == "image/png"
    assert client.get("/models/tiny-chat/files/training_curves.png").status_code == 200
    for path in ("/models/sentiment-lstm/files/config.json", "/models/tiny-chat/files/confusion_matrix.png"):
        assert client.get(path).json["error"]["code"] == "not_found"
