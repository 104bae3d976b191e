"""Admission to a model's worker thread: a bounded queue that refuses work (`overloaded`) rather than letting
latency grow without end. The classifiers' dynamic batching and the generators' continuous batching both use it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from textsvc.errors import OverloadedError

Item = TypeVar("Item")


class AdmissionQueue(Generic[Item]):
    """Items from many request threads for one worker thread, oldest first, at most `max_size` waiting.

    `put_all` queues a request's items, all or none (a request is never half-accepted), and wakes the worker; the
    worker `take`s them; after `close` nothing more is accepted and the worker drains what waits.
    """

    def __init__(self, max_size: int, *, name: str, unit: str = "requests", retry_after_s: int = 1,
                 on_depth: Callable[[int], None] | None = None):
        self.max_size, self.name, self.unit, self.retry_after_s = max_size, name, unit, retry_after_s
        self.on_depth = on_depth or (lambda depth: None)
        self._items: deque[Item] = deque()
        self._condition = threading.Condition()
        self._closed = False

    def put_all(self, items: Sequence[Item], bounded: bool = True) -> None:
        """Queue every item, or raise `overloaded` (the queue is full, or closed for shutdown) and queue none;
        `bounded=False` admits the items whatever waits (the worker's own warm-up, which no client's bound covers)."""
        with self._condition:
            if self._closed:
                raise OverloadedError("the service is shutting down", retry_after_s=self.retry_after_s)
            if bounded and len(self._items) + len(items) > self.max_size:
                raise OverloadedError(f"{len(self._items)} {self.unit} already wait for {self.name}; retry later",
                                      retry_after_s=self.retry_after_s)
            self._items.extend(items)
            self.on_depth(len(self._items))
            self._condition.notify()

    def take(self, count: int, *, block: bool = True, gather_s: float = 0.0,
             idle_s: float | None = None) -> list[Item] | None:
        """Up to `count` items, oldest first; None once closed and drained.

        With `block`, waits for a first item (without, returns [] when none waits; with `idle_s`, [] when none came
        within that many seconds), then up to `gather_s` more for `count` of them: the first item's wait bounds the
        batch's latency.
        """
        with self._condition:
            if block and not self._condition.wait_for(lambda: self._items or self._closed, idle_s):
                return []  # idle for `idle_s`
            if block and not self._items:
                return None
            deadline = time.monotonic() + gather_s
            while len(self._items) < count and not self._closed and (left := deadline - time.monotonic()) > 0:
                self._condition.wait(left)
            taken = [self._items.popleft() for _ in range(min(count, len(self._items)))]
            if taken:
                self.on_depth(len(self._items))
            return taken

    def close(self) -> None:
        """Accept nothing more; the worker takes what waits, then `take` returns None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
