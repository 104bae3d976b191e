"""The server's requests in flight, per client key too, and whether it is stopping: what graceful shutdown waits
for and what `max_concurrent_per_key` counts."""

from __future__ import annotations

import threading
import time
from collections import Counter

from textsvc.errors import ErrorCode, OverloadedError


class Lifecycle:
    """Inference requests in flight; once `stop` is called, none are admitted and `wait_idle` waits for the rest."""

    def __init__(self, retry_after_s: int = 1, max_in_flight: int | None = None):
        self.retry_after_s, self.max_in_flight = retry_after_s, max_in_flight
        self.stopping = False
        self._per_key: Counter[str] = Counter()
        self._in_flight = 0
        self._condition = threading.Condition()

    def enter(self, key: str | None, limit: int) -> None:
        """Admit a request (of client `key`, at most `limit` at once per key, 0: any); `shutting_down` (503) once
        stopping, `overloaded` (503) past `max_in_flight`, `too_many_requests` (429) past the key's limit."""
        with self._condition:
            if self.stopping:
                raise OverloadedError("the server is shutting down; retry on another replica",
                                      code=ErrorCode.SHUTTING_DOWN, retry_after_s=self.retry_after_s)
            if self.max_in_flight is not None and self._in_flight >= self.max_in_flight:
                raise OverloadedError(f"{self._in_flight} requests are in flight, as many as the server's threads "
                                      "allow; retry later", retry_after_s=self.retry_after_s)
            if key is not None and limit and self._per_key[key] >= limit:
                raise OverloadedError(f"this key already has {limit} requests in flight",
                                      code=ErrorCode.TOO_MANY_REQUESTS, retry_after_s=self.retry_after_s)
            self._in_flight += 1
            if key is not None:
                self._per_key[key] += 1

    def leave(self, key: str | None) -> None:
        """A request admitted by `enter` is done (its response closed, streams included)."""
        with self._condition:
            self._in_flight -= 1
            if key is not None:
                self._per_key[key] -= 1
                if not self._per_key[key]:
                    del self._per_key[key]
            self._condition.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def stop(self) -> None:
        """Admit nothing more."""
        with self._condition:
            self.stopping = True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight, at most `timeout_s`; whether none is."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._condition.wait(left)
            return not self._in_flight
