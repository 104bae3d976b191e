"""`textsvc serve` as a real process on 127.0.0.1: HTTP, streaming, batching under concurrency, disconnects."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from textsvc.cli import main
from textsvc.serving.allocator import find_jemalloc

from conftest import free_port

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def running_server(models_dir, *flags: str, env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`textsvc serve` in a subprocess on a free port: (base URL, process) once /ready answers; stopped at the end."""
    port = free_port()
    log = tempfile.TemporaryFile()  # not a pipe: one access-log line a request would fill it and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "textsvc.cli", "serve", "--models_dir", str(models_dir), "--port", str(port),
         "--device", "cpu", *flags], env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if urllib.request.urlopen(url + "/ready", timeout=2).status == 200:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # a server busy loading may answer late
            time.sleep(0.2)
    if process.poll() is not None or time.monotonic() >= deadline:
        process.kill()
        log.seek(0)
        pytest.fail("textsvc serve did not become ready:\n" + log.read().decode(errors="replace"))
    try:
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a starved machine: never leave it running for the next tests
            process.kill()
            process.wait()
            raise
        finally:
            log.close()


@pytest.fixture(scope="module")
def server(models_dir):
    """The base URL of a served `models_dir`; API keys come from the environment, not argv."""
    with running_server(models_dir, "--max_wait_ms", "50", "--threads", "12", "--default_classifier",
                        "sentiment-lstm", "--default_generator", "tiny-lstm-lm",
                        env={"TEXTSVC_API_KEYS": "k1,k2"}) as (url, _):
        yield url


def call(url: str, path: str, body: dict | None = None, key: str | None = "k1") -> tuple[int, dict | str]:
    """(status, JSON body or text) of one request."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw, kind = response.status, response.read().decode(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read().decode(), error.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw


def metric_samples(url: str, name: str) -> dict:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples if sample.name == name}


def test_routes_over_http(server):
    assert call(server, "/health") == (200, {"status": "ok"})
    status, models = call(server, "/models")
    assert status == 200 and len(models["models"]) == 4
    status, scores = call(server, "/classify", {"inputs": ["good great", "awful bad"]})
    assert status == 200 and [row[0]["label"] for row in scores] == ["pos", "neg"]
    status, answer = call(server, "/generate", {"inputs": "the cat", "parameters": {"max_new_tokens": 8}})
    assert status == 200 and isinstance(answer["generated_text"], str)
    status, error = call(server, "/classify", {"inputs": "good"}, key=None)
    assert status == 401 and error["error"]["code"] == "unauthorized"
    assert call(server, "/classify", {"inputs": "good"}, key="k2")[0] == 200
    status, error = call(server, "/classify", {"inputs": 3})
    assert status == 400 and error["error"]["code"] == "invalid_type"
    assert "textsvc_requests_total" in call(server, "/metrics")[1]


def test_sse_stream_over_http_joins_to_the_text(server):
    body = {"inputs": "my friend", "parameters": {"max_new_tokens": 20, "do_sample": True, "seed": 11}}
    whole = call(server, "/generate", body)[1]["generated_text"]
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=60)
    connection.request("POST", "/generate_stream", json.dumps(body),
                       {"Content-Type": "application/json", "Authorization": "Bearer k1"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    events = [json.loads(line[len(b"data: "):]) for line in response.read().split(b"\n\n") if line]
    connection.close()
    assert "".join(e["token"]["text"] for e in events) == whole == events[-1]["generated_text"]


def test_concurrent_requests_are_batched(server):
    def batch_totals():
        samples = metric_samples(server, "textsvc_batch_size_sum"), metric_samples(server, "textsvc_batch_size_count")
        key = (("model", "sentiment-lstm"),)
        return samples[0].get(key, 0), samples[1].get(key, 0)

    texts_before, batches_before = batch_totals()
    statuses = []
    def classify(i: int) -> None:
        statuses.append(call(server, "/classify", {"inputs": f"good {i}"})[0])

    threads = [threading.Thread(target=classify, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 10
    texts, batches = batch_totals()
    assert texts - texts_before == 10
    assert batches - batches_before < 10  # at least one forward pass served several requests


def test_a_dropped_stream_frees_the_model(server):
    host, port = server.removeprefix("http://").split(":")
    body = json.dumps({"inputs": "", "model": "tiny-lstm-lm",  # no context limit: 512 tokens fit
                       "parameters": {"max_new_tokens": 512, "do_sample": True, "seed": 1}}).encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer k1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b"data: " not in received:  # the headers, then the first event
            received += sock.recv(4096)
        sock.shutdown(socket.SHUT_RDWR)
    status, answer = call(server, "/generate", {"inputs": "a", "model": "tiny-lstm-lm",
                                                "parameters": {"max_new_tokens": 4, "details": True}})
    assert status == 200
    generated = metric_samples(server, "textsvc_generated_tokens_total").get((("model", "tiny-lstm-lm"),), 0)
    assert generated - answer["details"]["generated_tokens"] < 512  # the dropped stream did not run to its end


def test_hugging_face_clients_work_unchanged(server, monkeypatch):
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.errors import ValidationError

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the suite's hub lock-out; only 127.0.0.1 is called

    client = InferenceClient(model=server, token="k1")  # TGI's base URL: the client posts to /
    whole = client.text_generation("the cat", max_new_tokens=10, seed=2, do_sample=True, details=True)
    assert whole.details.generated_tokens == len(whole.details.tokens) >= 1
    assert "".join(token.text for token in whole.details.tokens if not token.special) == whole.generated_text
    pieces = list(client.text_generation("the cat", max_new_tokens=10, seed=2, do_sample=True, stream=True))
    assert "".join(piece for piece in pieces) == whole.generated_text
    with pytest.raises(ValidationError, match="top_p"):
        client.text_generation("the cat", top_p=0.0)
    scores = InferenceClient(model=server + "/classify", token="k1").text_classification("good great", top_k=2)
    assert [score.label for score in scores] == ["pos", "neg"] and sum(s.score for s in scores) == pytest.approx(1)


def test_two_replicas_over_one_models_dir_answer_alike(models_dir):
    """Replicas keep no state but the models they read: behind a round-robin balancer a client cannot tell them
    apart, and one going down leaves the other serving."""
    with running_server(models_dir) as (first, first_process), running_server(models_dir) as (second, _):
        generate = {"inputs": "the cat", "model": "tiny-lstm-lm",
                    "parameters": {"max_new_tokens": 12, "do_sample": True, "seed": 5, "details": True}}
        classify = {"inputs": ["good great", "awful"], "model": "sentiment-lstm"}
        answers = [(call(url, "/generate", generate, key=None), call(url, "/classify", classify, key=None))
                   for url in (first, second, first, second)]  # round robin
        assert answers[0][0][0] == answers[0][1][0] == 200 and all(answer == answers[0] for answer in answers)
        assert call(first, "/models")[1] == call(second, "/models")[1]
        first_process.terminate()
        first_process.wait(timeout=10)
        assert call(second, "/generate", generate, key=None) == answers[0][0]


@pytest.mark.skipif(find_jemalloc() is None or not sys.platform.startswith("linux"), reason="no jemalloc installed")
def test_serve_runs_on_jemalloc_where_installed_and_on_malloc_when_asked(models_dir):
    """`serve` starts itself again (same process id) with jemalloc preloaded; `--allocator system` keeps malloc."""
    for flags, expected in (((), True), (("--allocator", "system"), False)):
        with running_server(models_dir, *flags) as (url, process):
            assert ("libjemalloc" in Path(f"/proc/{process.pid}/maps").read_text()) == expected
            assert call(url, "/classify", {"inputs": "good great", "model": "sentiment-lstm"}, key=None)[0] == 200


def test_serve_refuses_a_missing_folder(tmp_path, capsys):
    assert main(["serve", "--models_dir", str(tmp_path / "absent")]) == 2
    assert "models_dir" in capsys.readouterr().err
