"""Prometheus metrics of one service instance, in its own registry (several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Telemetry:
    """The service's counters, gauges and histograms."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("textsvc_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("textsvc_request_duration_seconds", "Time to the response headers, by route",
                                 ["route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.queue_depth = Gauge("textsvc_queue_depth", "Texts (classifiers) or requests (generators) waiting",
                                 ["model"], registry=self.registry)
        self.batch_size = Histogram("textsvc_batch_size", "Texts per classifier forward pass, or sequences per "
                                    "generator decoding step", ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.tokens_generated = Counter("textsvc_generated_tokens", "Tokens generated", ["model"],
                                        registry=self.registry)
        self.time_to_first_token = Histogram("textsvc_time_to_first_token_seconds",
                                             "From the start of a generation to its first token", ["model"],
                                             buckets=LATENCY_BUCKETS_S, registry=self.registry)

        self.auth_failures = Counter("textsvc_auth_failures", "Requests refused for a missing or wrong key, by scope "
                                     "(inference, admin)", ["scope"], registry=self.registry)

        self.in_flight = Gauge("textsvc_requests_in_flight", "Inference requests admitted and not yet answered "
                               "(streams until their last event)", registry=self.registry)

    def worker_hooks(self, model: str) -> dict[str, Callable]:
        """The callbacks through which a model's worker reports: batch sizes and queue depth (both kinds), and the
        time to the first token and the tokens made (generators). A series appears at its first report."""
        return {"on_batch": lambda size: self.batch_size.labels(model).observe(size),
                "on_depth": lambda depth: self.queue_depth.labels(model).set(depth),
                "on_first_token": lambda seconds: self.time_to_first_token.labels(model).observe(seconds),
                "on_tokens": lambda count: self.tokens_generated.labels(model).inc(count)}

    def exposition(self) -> bytes:
        """The text format that Prometheus scrapes."""
        return generate_latest(self.registry)
