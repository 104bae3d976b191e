"""Dynamic batching for classifiers: texts from many request threads gathered into one forward pass on a worker
thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from textsvc.serving.admission import AdmissionQueue


class DynamicBatcher:
    """Collects items until `max_batch_size` are waiting or the oldest has waited `max_wait_ms`, then runs
    `predict(items) -> results` once on its worker thread and hands each caller its own result (a Future).

    Items wait in a bounded queue: `submit_all` refuses with `overloaded` rather than letting latency grow without end.
    """

    def __init__(self, predict: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int, max_wait_ms: float,
                 max_queue_size: int, name: str = "batcher", retry_after_s: int = 1,
                 on_batch: Callable[[int], None] | None = None, on_depth: Callable[[int], None] | None = None):
        self.predict, self.max_batch_size, self.max_wait_s = predict, max_batch_size, max_wait_ms / 1000
        self.on_batch = on_batch or (lambda size: None)
        self.queue: AdmissionQueue[tuple[Any, Future]] = AdmissionQueue(
            max_queue_size, name=name, unit="texts", retry_after_s=retry_after_s, on_depth=on_depth)
        self._worker = threading.Thread(target=self._run, name=f"textsvc-{name}", daemon=True)
        self._worker.start()

    def submit_all(self, items: Sequence[Any]) -> list[Future]:
        """Queue all `items` or none of them; one Future per item."""
        futures = [Future() for _ in items]
        self.queue.put_all(list(zip(items, futures)))
        return futures

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        self.queue.close()
        self._worker.join(timeout=10)

    def _run(self) -> None:
        while (batch := self.queue.take(self.max_batch_size, gather_s=self.max_wait_s)) is not None:
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
