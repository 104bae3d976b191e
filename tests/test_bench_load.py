"""The benchmarks' HTTP client (scripts/bench_load.py): one kept connection per client thread, a fresh one when the
server has closed it, and refusals reported with their status."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_load as load  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless a response says otherwise

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self):
        self.server.peers.append(self.client_address[1])  # the client's port: one per connection
        status, headers = (503, {"Retry-After": "3"}) if self.path == "/busy" else (200, {})
        body = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json",
                            "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        # /drop: the connection ends without saying so, as a server's idle timeout ends a kept one
        self.close_connection = self.path == "/drop"

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.peers = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_client_reuses_its_connection(server):
    httpd, base = server
    assert load.post_json(base + "/classify", {"inputs": "a"}) == {"ok": True}
    assert load.get_once(base + "/health").status == 200
    assert load.classify_once(base + "/classify", ["a"]).status == 200
    assert len(httpd.peers) == 3 and len(set(httpd.peers)) == 1


def test_a_connection_the_server_closed_is_replaced(server):
    httpd, base = server
    assert load.get_once(base + "/drop").status == 200
    assert load.get_once(base + "/health").status == 200  # the kept connection is gone: a new one, no error
    assert len(set(httpd.peers)) == 2


def test_one_connection_per_request_without_keep_alive(server, monkeypatch):
    httpd, base = server
    monkeypatch.setattr(load, "KEEP_ALIVE", False)
    for _ in range(2):
        assert load.get_once(base + "/health").status == 200
    assert len(set(httpd.peers)) == 2


def test_a_refusal_keeps_its_status_and_retry_after(server):
    _, base = server
    outcome = load.classify_once(base + "/busy", ["a"])
    assert (outcome.status, outcome.retry_after) == (503, "3") and outcome.error
    assert load.get_once(base + "/health").status == 200  # the connection survives an error status
