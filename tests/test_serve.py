"""`textsvc serve` as a real process on 127.0.0.1: HTTP, streaming, batching under concurrency, disconnects."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from textsvc.cli import main

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(models_dir):
    """The base URL of `textsvc serve` running in a subprocess, stopped at the end."""
    port = free_port()
    env = {**os.environ, "TEXTSVC_API_KEYS": "k1,k2"}  # keys from the environment, not argv
    process = subprocess.Popen(
        [sys.executable, "-m", "textsvc.cli", "serve", "--models_dir", str(models_dir), "--port", str(port),
         "--device", "cpu", "--max_wait_ms", "50", "--threads", "12", "--default_classifier", "sentiment-lstm",
         "--default_generator", "tiny-lstm-lm"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if urllib.request.urlopen(url + "/ready", timeout=2).status == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    if process.poll() is not None or time.monotonic() >= deadline:
        process.kill()
        pytest.fail("textsvc serve did not become ready:\n" + process.stdout.read().decode(errors="replace"))
    yield url
    process.terminate()
    process.wait(timeout=10)


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
    body = json.dumps({"inputs": "", "model": "tiny-gpt",
                       "parameters": {"max_new_tokens": 512, "do_sample": True, "seed": 1}}).encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer k1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b"data: " not in received:  # the headers, then the first event
            received += sock.recv(4096)
        sock.shutdown(socket.SHUT_RDWR)
    status, answer = call(server, "/generate", {"inputs": "a", "model": "tiny-gpt",
                                                "parameters": {"max_new_tokens": 4, "details": True}})
    assert status == 200  # the model's lock was released
    generated = metric_samples(server, "textsvc_generated_tokens_total").get((("model", "tiny-gpt"),), 0)
    assert generated - answer["details"]["generated_tokens"] < 512  # the dropped stream did not run to its end


def test_serve_refuses_a_missing_folder(tmp_path, capsys):
    assert main(["serve", "--models_dir", str(tmp_path / "absent")]) == 2
    assert "models_dir" in capsys.readouterr().err
