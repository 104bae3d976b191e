"""One broken model, a reload, a wrong key, a flood from one client or a slow request never cost the others their
answers: through Flask's test client, on tiny real models."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from textsvc.cli import main
from textsvc.config.serving import ServingConfig, http_threads, max_in_flight
from textsvc.serving.api import create_app
from textsvc.serving.auth import KeyRing, hash_key

from conftest import metric, write_broken_models

ADMIN = {"Authorization": "Bearer admin-key"}
USER = {"Authorization": "Bearer user-key"}


@pytest.fixture()
def broken_models(tmp_path, lstm_dir, lstm_lm_dir):
    """Two good models and one whose model.safetensors is 4 KB of random bytes."""
    return write_broken_models(tmp_path / "models", lstm_dir, lstm_lm_dir)


def served(models_dir, **settings):
    app = create_app({"models_dir": str(models_dir), "device": "cpu", "warmup": False, **settings})
    return app, app.test_client()



def test_a_corrupt_model_fails_alone_and_its_message_shows_no_path(broken_models):
    app, client = served(broken_models)
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["ready"] == ["sentiment-lstm", "tiny-lstm-lm"]
    (failure,) = ready.json["failed"]
    assert failure["name"] == "corrupt" and failure["kind"] == "classifier" and failure["error"]["code"]
    assert str(broken_models) not in str(ready.json) and "/" not in failure["error"]["message"].replace("<path>", "")
    listed = {entry["name"]: entry for entry in client.get("/models").json["models"]}
    assert listed["corrupt"]["status"] == "failed" and listed["sentiment-lstm"]["status"] == "ready"
    assert client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"}).status_code == 200
    refused = client.post("/classify", json={"inputs": "good", "model": "corrupt"})
    assert refused.status_code == 503 and refused.json["error"]["code"] == "load_failed"
    app.extensions["textsvc"].close()


def test_ready_policy_defaults_and_require_all_models(broken_models):
    app, client = served(broken_models, require_all_models=True)
    strict = client.get("/ready")
    assert strict.status_code == 503 and strict.json["error"]["code"] == "load_failed"  # never not_ready
    assert client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"}).status_code == 200
    app.extensions["textsvc"].close()
    app, client = served(broken_models, default_classifier="corrupt")
    assert client.get("/ready").json["error"]["code"] == "load_failed"
    app.extensions["textsvc"].close()


def test_admin_reload_adds_replaces_and_removes(broken_models, transformer_dir):
    app, client = served(broken_models, admin_keys=("admin-key",), api_keys=("user-key",))
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers=USER).json["error"]["code"] == "unauthorized"  # not an admin key
    old = app.extensions["textsvc"].models["sentiment-lstm"]
    shutil.rmtree(broken_models / "corrupt")
    shutil.copytree(transformer_dir, broken_models / "sentiment-bert")
    (broken_models / "sentiment-lstm" / "README.md").write_text("a new card\n", encoding="utf-8")
    changes = client.post("/admin/reload", headers=ADMIN).json
    assert (changes["added"], changes["replaced"], changes["removed"]) == (["sentiment-bert"], ["sentiment-lstm"],
                                                                           ["corrupt"])
    assert changes["ready"] and changes["failures"] == []
    assert app.extensions["textsvc"].models["sentiment-lstm"] is not old
    old.batcher.submit_all([[1, 2]])[0].result(timeout=10)  # a request that picked the old version still finishes
    names = [entry["name"] for entry in client.get("/models").json["models"]]
    assert names == ["sentiment-lstm", "tiny-lstm-lm", "sentiment-bert"]
    assert client.post("/classify", json={"inputs": "good", "model": "sentiment-bert"}, headers=USER).status_code == 200
    assert client.post("/admin/reload", headers=ADMIN).json["unchanged"] == sorted(names)
    app.extensions["textsvc"].close()


def test_keys_are_hashed_and_failed_attempts_counted(tmp_path, broken_models, capsys, monkeypatch):
    key_file = tmp_path / "keys"
    key_file.write_text(f"# the writers' page\n{hash_key('from-file')}\n", encoding="utf-8")
    app, client = served(broken_models, api_keys_file=str(key_file), api_keys=(hash_key("hashed"), "plain"))
    body = {"inputs": "good", "model": "sentiment-lstm"}
    for key in ("from-file", "hashed", "plain"):
        assert client.post("/classify", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.post("/classify", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/classify", json=body).status_code == 401
    assert metric(client, "textsvc_auth_failures_total", scope="inference") == 2
    assert client.get("/health").status_code == client.get("/metrics").status_code == 200  # open without a key
    assert client.get("/ready").status_code == 200
    app.extensions["textsvc"].close()
    key_file.write_text("plain-key-on-disk\n", encoding="utf-8")
    with pytest.raises(Exception) as error:
        served(broken_models, api_keys_file=str(key_file))
    assert error.value.code == "invalid_config" and error.value.field == "api_keys_file"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("from-file\n"))
    assert main(["hash-key"]) == 0 and capsys.readouterr().out.strip() == hash_key("from-file")
    assert KeyRing((hash_key("x"),)).match("x") == hash_key("x")[7:19]


@pytest.mark.parametrize(("setting", "body", "code"), [
    ({"max_input_chars": 10}, {"inputs": "good " * 5, "model": "sentiment-lstm"}, "input_too_long"),
    ({"max_input_chars": 10}, {"inputs": "a " * 20, "model": "tiny-lstm-lm"}, "input_too_long"),
    ({"max_stop_sequences": 2}, {"inputs": "a", "parameters": {"stop": ["x", "y", "z"]}}, "invalid_parameter"),
    ({"max_stop_chars": 3}, {"inputs": "a", "parameters": {"stop": ["long stop"]}}, "invalid_parameter"),
    ({"max_new_tokens_limit": 4}, {"inputs": "a", "parameters": {"max_new_tokens": 5}}, "invalid_parameter"),
    ({"max_inputs": 1}, {"inputs": ["good", "bad"], "model": "sentiment-lstm"}, "too_many_inputs"),
])
def test_limits_are_refused_before_any_work(broken_models, setting, body, code):
    app, client = served(broken_models, **setting)
    path = "/classify" if body.get("model") == "sentiment-lstm" else "/generate"
    answer = client.post(path, json={"model": "tiny-lstm-lm", **body})
    assert answer.status_code == 400 and (answer.json.get("code") or answer.json["error"]["code"]) == code
    app.extensions["textsvc"].close()


def test_a_deadline_cancels_the_generation(broken_models):
    app, client = served(broken_models, request_timeout_s=0.05)
    engine, started = app.extensions["textsvc"], time.monotonic()
    body = {"inputs": "", "model": "tiny-lstm-lm", "parameters": {"max_new_tokens": 512}}  # greedy: no early EOS
    answer = client.post("/generate", json=body)
    assert answer.status_code == 504 and answer.json["code"] == "deadline_exceeded"
    stream = client.post("/generate_stream", json=body).get_data(as_text=True)
    assert '"deadline_exceeded"' in stream.strip().split("\n\n")[-1]
    assert time.monotonic() - started < 30
    assert metric(client, "textsvc_generated_tokens_total", model="tiny-lstm-lm") < 2 * 512
    engine.close()


def test_concurrent_requests_per_key_are_capped(broken_models):
    app, client = served(broken_models, api_keys=("user-key", "other"), max_concurrent_per_key=1)
    body = {"inputs": "", "model": "tiny-lstm-lm", "parameters": {"max_new_tokens": 50}}
    first = client.post("/generate_stream", json=body, headers=USER, buffered=False)  # holds its seat until closed
    refused = client.post("/generate", json=body, headers=USER)
    assert refused.status_code == 429 and refused.json["code"] == "too_many_requests" and refused.headers["Retry-After"]
    assert client.post("/generate", json=body, headers={"Authorization": "Bearer other"}).status_code == 200
    first.close()
    assert client.post("/generate", json=body, headers=USER).status_code == 200
    app.extensions["textsvc"].close()


def test_requests_past_the_threads_to_spare_get_a_quick_503(broken_models):
    config = ServingConfig(threads=2)  # one request in flight at once: a thread stays free for refusals and /health
    assert max_in_flight(config) == 1 and max_in_flight(ServingConfig()) < http_threads(ServingConfig())
    app, client = served(broken_models, threads=2)
    body = {"inputs": "", "model": "tiny-lstm-lm", "parameters": {"max_new_tokens": 50}}
    first = client.post("/generate_stream", json=body, buffered=False)  # holds its thread until closed
    refused = client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"})
    assert refused.status_code == 503 and refused.json["error"]["code"] == "overloaded"
    assert refused.headers["Retry-After"] and client.get("/health").status_code == 200
    first.close()
    assert client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"}).status_code == 200
    app.extensions["textsvc"].close()


def test_cors_is_off(broken_models):
    app, client = served(broken_models)
    answer = client.options("/classify", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers
    app.extensions["textsvc"].close()
    app, client = served(broken_models, cors_origins=("https://page.example",), api_keys=("user-key",))
    preflight = client.options("/classify", headers={"Origin": "https://page.example"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "https://page.example"
    other = client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"}, headers={
        "Origin": "https://elsewhere.example", **USER})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    app.extensions["textsvc"].close()


@pytest.mark.parametrize("log_texts", [False, True])
def test_one_json_log_line_per_request_without_the_text(broken_models, caplog, log_texts):
    app, client = served(broken_models, log_texts=log_texts)
    with caplog.at_level("INFO", logger="textsvc.access"):
        client.post("/classify", json={"inputs": "secret words", "model": "sentiment-lstm"}).close()
    (line,) = [json.loads(record.getMessage()) for record in caplog.records if record.name == "textsvc.access"]
    assert line["route"] == "/classify" and line["status"] == 200 and line["total_ms"] >= 0
    assert ("secret words" in json.dumps(line)) is log_texts
    app.extensions["textsvc"].close()


def test_a_pickle_only_model_is_refused_alone(broken_models):
    pickled = broken_models / "pickled"
    shutil.copytree(broken_models / "sentiment-lstm", pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"a pickle would run code on load")
    app, client = served(broken_models)
    failed = {entry["name"]: entry["error"]["code"] for entry in client.get("/ready").json["failed"]}
    assert failed["pickled"] == "incomplete_model_dir"
    assert client.post("/classify", json={"inputs": "good", "model": "sentiment-lstm"}).status_code == 200
    app.extensions["textsvc"].close()
