"""Dynamic batching: requests from many threads gathered into one call of a batch function on a worker thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from textsvc.errors import OverloadedError


class DynamicBatcher:
    """Collects items until `max_batch_size` are waiting or the oldest has waited `max_wait_ms`, then runs
    `predict(items) -> results` once on its worker thread and hands each caller its own result (a Future).

    Items wait in a bounded queue: `submit` refuses with `overloaded` rather than letting latency grow without end.
    """

    def __init__(self, predict: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int, max_wait_ms: float,
                 max_queue_size: int, name: str = "batcher", retry_after_s: int = 1,
                 on_batch: Callable[[int], None] | None = None, on_depth: Callable[[int], None] | None = None):
        self.predict, self.max_batch_size, self.max_wait_s = predict, max_batch_size, max_wait_ms / 1000
        self.max_queue_size, self.retry_after_s = max_queue_size, retry_after_s
        self.on_batch, self.on_depth = on_batch or (lambda size: None), on_depth or (lambda depth: None)
        self._pending: deque[tuple[Any, Future]] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"textsvc-{name}", daemon=True)
        self._worker.start()

    def submit_all(self, items: Sequence[Any]) -> list[Future]:
        """Queue all `items` or none of them (a request is never half-accepted); one Future per item."""
        futures = [Future() for _ in items]
        with self._condition:
            if self._closed:
                raise OverloadedError("the service is shutting down", retry_after_s=self.retry_after_s)
            if len(self._pending) + len(items) > self.max_queue_size:
                raise OverloadedError(f"{len(self._pending)} texts already wait for this model; retry later",
                                      retry_after_s=self.retry_after_s)
            self._pending.extend(zip(items, futures))
            self.on_depth(len(self._pending))
            self._condition.notify()
        return futures

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._worker.join(timeout=10)

    def _next_batch(self) -> list[tuple[Any, Future]] | None:
        with self._condition:
            while not self._pending and not self._closed:
                self._condition.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.max_wait_s  # the first item's wait bounds the batch's latency
            while len(self._pending) < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
            self.on_depth(len(self._pending))
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.on_batch(len(batch))
            try:
                results = self.predict([item for item, _ in batch])
            except BaseException as error:  # the callers see the error; the worker lives on
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
