"""Today's clients against `textsvc serve` on 127.0.0.1, unchanged: the `openai` SDK's chat completions, plain and
streamed; huggingface_hub's `InferenceClient.chat_completion`; a TEI-style `/predict` call."""

from __future__ import annotations

import json
import urllib.request

import pytest
from test_serve import running_server

pytestmark = pytest.mark.slow
CONVERSATION = [{"role": "system", "content": "a"}, {"role": "user", "content": "the cat"}]


@pytest.fixture(scope="module")
def server(chat_models_dir):
    with running_server(chat_models_dir, "--default_generator", "tiny-chat", "--default_classifier",
                        "sentiment-lstm", env={"TEXTSVC_API_KEYS": "k1"}) as (url, _):
        yield url


def test_openai_sdk_chat_plain_and_streamed(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="k1", max_retries=0)
    plain = client.chat.completions.create(model="tiny-chat", messages=CONVERSATION, max_tokens=8, temperature=0)
    assert plain.choices[0].message.role == "assistant" and plain.choices[0].finish_reason in ("stop", "length")
    assert plain.usage.completion_tokens >= 1
    stream = client.chat.completions.create(model="tiny-chat", messages=CONVERSATION, max_tokens=8, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == plain.choices[0].message.content  # greedy: the joined stream is the plain answer
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-chat", messages=CONVERSATION, n=2)
    assert refused.value.code == "invalid_parameter" and refused.value.param == "n"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-gpt", messages=CONVERSATION)
    assert refused.value.code == "no_chat_template"


def test_huggingface_hub_chat_completion(server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the suite's hub lock-out; 127.0.0.1 only
    client = InferenceClient(base_url=server, api_key="k1")
    answer = client.chat_completion(CONVERSATION, model="tiny-chat", max_tokens=8, temperature=0, seed=1)
    assert answer.choices[0].message.role == "assistant" and answer.usage.prompt_tokens > 0
    pieces = [chunk.choices[0].delta.content or "" for chunk in
              client.chat_completion(CONVERSATION, model="tiny-chat", max_tokens=8, temperature=0, stream=True)
              if chunk.choices]
    assert "".join(pieces) == answer.choices[0].message.content


def test_tei_style_predict(server):
    body = json.dumps({"inputs": "good great excellent", "truncate": True, "raw_scores": False}).encode()
    request = urllib.request.Request(server + "/predict", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Bearer k1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        scores, headers = json.loads(response.read()), response.headers
    assert scores[0]["label"] == "pos" and set(scores[0]) == {"label", "score"}
    assert float(headers["x-compute-time"]) > 0 and int(headers["x-prompt-tokens"]) > 0
