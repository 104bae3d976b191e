"""Faults on a real `textsvc serve` process: a corrupt model fails alone, SIGHUP publishes a repaired one, and
SIGTERM lets the requests in flight (a stream too) finish before the process exits 0."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from test_serve import call, metric_samples, running_server

from conftest import write_broken_models

pytestmark = pytest.mark.slow
LONG = {"inputs": "", "model": "tiny-lstm-lm", "parameters": {"max_new_tokens": 3000, "details": True}}  # ~5 s


def wait_for(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def open_stream(url: str, body: dict) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=120)
    connection.request("POST", "/generate_stream", json.dumps(body), {"Content-Type": "application/json"})
    return connection.getresponse()


def test_corrupt_model_sighup_and_sigterm_on_a_real_server(tmp_path, lstm_dir, lstm_lm_dir):
    models = write_broken_models(tmp_path / "models", lstm_dir, lstm_lm_dir)
    with running_server(models, "--max_new_tokens_limit", "3000", "--shutdown_grace_s", "60") as (url, process):
        status, ready = call(url, "/ready")
        assert status == 200 and [failure["name"] for failure in ready["failed"]] == ["corrupt"]
        assert str(tmp_path) not in json.dumps(ready)
        assert call(url, "/classify", {"inputs": "good", "model": "sentiment-lstm"})[0] == 200

        shutil.rmtree(models / "corrupt")
        shutil.copytree(lstm_dir, models / "corrupt")  # repaired: SIGHUP publishes it without a restart
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "failed" not in call(url, "/ready")[1])
        assert call(url, "/classify", {"inputs": "good", "model": "corrupt"})[0] == 200

        answers = {}
        plain = threading.Thread(target=lambda: answers.update(plain=call(url, "/generate", LONG)))
        stream = open_stream(url, LONG)
        plain.start()
        assert stream.status == 200 and stream.readline().startswith(b"data: ")  # the stream is under way
        wait_for(lambda: metric_samples(url, "textsvc_requests_in_flight")[()] == 2, 10)  # and the plain one
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: call(url, "/ready")[0] == 503, 10)
        status, refused = call(url, "/ready")
        assert refused["error"]["code"] == "shutting_down"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(
                url + "/classify", data=b'{"inputs": "good", "model": "sentiment-lstm"}',
                headers={"Content-Type": "application/json"}), timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
        assert json.loads(refused.value.read())["error"]["code"] == "shutting_down"
        events = [json.loads(line[len(b"data: "):]) for line in stream.read().split(b"\n\n") if line.strip()]
        plain.join(60)
        assert events[-1]["details"]["generated_tokens"] == 3000  # the stream finished whole
        assert answers["plain"][0] == 200 and answers["plain"][1]["details"]["generated_tokens"] == 3000
        assert process.wait(timeout=30) == 0
