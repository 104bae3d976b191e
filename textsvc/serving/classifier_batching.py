"""Dynamic batching for classifiers: texts from many request threads gathered into forward passes on a worker thread.

As in TEI, a text that finds the worker idle runs at once; texts that arrive while it is busy wait and form the next
batch, sorted by length and cut by a token budget as well as by count, so that padding stays small.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from textsvc.serving.admission import AdmissionQueue
from textsvc.serving.memory import return_freed_memory

IDLE_TRIM_S = 1.0  # after this long without texts, the worker hands the freed heap back (serving.memory)


def plan_batches(lengths: Sequence[int], max_count: int, max_tokens: int) -> list[list[int]]:
    """Indices of items grouped into batches: shortest first, each at most `max_count` items and `max_tokens` padded
    tokens (its longest item times its size); an item longer than `max_tokens` runs alone."""
    batches, current, longest = [], [], 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        grown = max(longest, lengths[index])
        if current and (len(current) == max_count or grown * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, grown = [], lengths[index]
        current.append(index)
        longest = grown
    return batches + [current] if current else batches


class DynamicBatcher:
    """Takes what waits (after `max_wait_ms` more for company, 0 by default), runs `predict(items) -> results` on
    its worker thread in batches planned by `plan_batches`, and hands each caller its own result (a Future).

    Items wait in a bounded queue: `submit_all` refuses with `overloaded` rather than letting latency grow without end.
    """

    def __init__(self, predict: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int, max_wait_ms: float,
                 max_queue_size: int, name: str = "batcher", retry_after_s: int = 1,
                 max_batch_tokens: int | None = None, length: Callable[[Any], int] | None = None,
                 on_batch: Callable[[int], None] | None = None, on_depth: Callable[[int], None] | None = None):
        self.predict, self.max_batch_size, self.max_wait_s = predict, max_batch_size, max_wait_ms / 1000
        self.max_batch_tokens, self.length = max_batch_tokens, length
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
        trimmed = True  # nothing freed since the last trim: wait without a timeout
        while (taken := self.queue.take(self.max_batch_size, gather_s=self.max_wait_s,
                                        idle_s=None if trimmed else IDLE_TRIM_S)) is not None:
            if not taken:  # a burst ended: its batches' freed memory goes back once, not after every batch
                return_freed_memory()
                trimmed = True
                continue
            trimmed = False
            taken = [(item, future) for item, future in taken if future.set_running_or_notify_cancel()]
            lengths = [self.length(item) if self.length else 1 for item, _ in taken]  # no `length`: count only
            budget = self.max_batch_tokens if self.length and self.max_batch_tokens else sys.maxsize
            for indices in plan_batches(lengths, self.max_batch_size, budget):
                self._predict([taken[index] for index in indices])

    def _predict(self, batch: list[tuple[Any, Future]]) -> None:
        self.on_batch(len(batch))
        started = time.perf_counter()
        for _, future in batch:
            future.started = started  # the queue time ends here (the timing headers read it)
        try:
            results = self.predict([item for item, _ in batch])
        except BaseException as error:  # the callers see the error; the worker lives on
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
