"""Serving: the Flask app, request parsing, the batching and decoding workers, telemetry."""
