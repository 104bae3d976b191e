"""The production server: waitress with graceful shutdown (SIGTERM, SIGINT) and model reloads (SIGHUP).

On SIGTERM or SIGINT, /ready turns 503 and new inference requests get 503 `shutting_down` with Retry-After; the
requests in flight, streams too, get up to `shutdown_grace_s` to finish and to reach their clients; then the
workers stop and `serve` returns, so the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import waitress
from flask import Flask

from textsvc.config.serving import ServingConfig, http_threads

log = logging.getLogger(__name__)
FLUSH_S = 5.0  # after the last response is complete, how long its bytes may take to leave the socket buffers


def serve(app: Flask, config: ServingConfig) -> None:
    """Serve `app` on config.host:port until SIGTERM or SIGINT, then drain and return."""
    # a request look-ahead lets waitress notice a client that hung up mid-stream (environ's client_disconnected)
    server = waitress.create_server(app, host=config.host, port=config.port, threads=http_threads(config),
                                    channel_request_lookahead=1, ident="textsvc")
    drained, lifecycle, engine = threading.Event(), app.extensions["textsvc.guard"].lifecycle, app.extensions["textsvc"]

    def drain() -> None:
        finished = lifecycle.wait_idle(config.shutdown_grace_s)
        log.warning("shutdown: %s", "requests in flight finished" if finished
                    else f"{lifecycle.in_flight} requests still running after {config.shutdown_grace_s} s")
        deadline = time.monotonic() + FLUSH_S
        while time.monotonic() < deadline and any(channel.total_outbufs_len
                                                  for channel in list(server.active_channels.values())):
            time.sleep(0.05)
        drained.set()
        signal.raise_signal(signal.SIGTERM)  # wakes the main thread's loop, whose handler now ends it

    def on_stop(signum, frame) -> None:
        if drained.is_set() or lifecycle.stopping and signum == signal.SIGINT:
            raise SystemExit(0)  # waitress's loop catches it and stops its task threads
        if not lifecycle.stopping:
            log.warning("shutdown: signal %s; finishing %d requests in flight", signum, lifecycle.in_flight)
            lifecycle.stop()
            threading.Thread(target=drain, name="textsvc-drain", daemon=True).start()

    def on_reload(signum, frame) -> None:
        threading.Thread(target=_reload_quietly, args=(engine,), name="textsvc-reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_reload)
    try:
        server.run()
    finally:
        server.close()
        engine.close()


def _reload_quietly(engine) -> None:
    try:
        log.warning("reload: %s", engine.reload())
    except Exception:  # a bad folder must not end a serving process
        log.exception("reload failed")
