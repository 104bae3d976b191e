"""Batches planned by length and token budget: a truth table, and the batcher running a lone text at once."""

from __future__ import annotations

import threading

import pytest

from textsvc.serving.classifier_batching import DynamicBatcher, plan_batches


@pytest.mark.parametrize(("lengths", "max_count", "max_tokens", "batches"), [
    ([], 4, 100, []),
    ([5], 4, 100, [[0]]),
    ([9, 1, 5], 4, 100, [[1, 2, 0]]),  # shortest first
    ([3, 3, 3, 3, 3], 2, 100, [[0, 1], [2, 3], [4]]),  # capped by count
    ([10, 10, 10], 8, 20, [[0, 1], [2]]),  # capped by padded tokens: 2 x 10
    ([2, 2, 30], 8, 20, [[0, 1], [2]]),  # a text over the budget runs alone
    ([4, 8, 2, 6], 8, 16, [[2, 0], [3, 1]]),  # 2 x 4 = 8 fits, a third would pad to 6 x 3 = 18
])
def test_plan_batches(lengths, max_count, max_tokens, batches):
    assert plan_batches(lengths, max_count, max_tokens) == batches


def test_every_item_gets_its_own_result_across_planned_batches():
    seen = []

    def predict(items):
        seen.append(len(items))
        return [sum(item) for item in items]

    batcher = DynamicBatcher(predict, max_batch_size=3, max_wait_ms=50, max_queue_size=64, max_batch_tokens=6,
                             length=len)
    items = [[1] * n for n in (1, 5, 2, 4, 3, 1, 2)]
    futures = batcher.submit_all(items)
    assert [future.result(timeout=10) for future in futures] == [len(item) for item in items]
    assert sum(seen) == len(items) and max(seen) <= 3
    batcher.close()


def test_a_text_runs_at_once_when_idle_and_later_ones_batch_while_busy():
    started, release, calls = threading.Event(), threading.Event(), []

    def predict(items):
        calls.append(list(items))
        started.set()
        release.wait(10)
        return items

    batcher = DynamicBatcher(predict, max_batch_size=32, max_wait_ms=0, max_queue_size=8, length=len)
    first = batcher.submit_all([[1]])
    assert started.wait(10)  # the idle worker ran the lone text without waiting for company
    later = batcher.submit_all([[1, 2, 3], [4]]) + batcher.submit_all([[5, 6]])
    release.set()
    assert [f.result(timeout=10) for f in first + later] == [[1], [1, 2, 3], [4], [5, 6]]
    assert calls == [[[1]], [[4], [5, 6], [1, 2, 3]]]  # what waited meanwhile: one batch, shortest first
    batcher.close()


def test_the_worker_trims_once_after_a_burst_not_after_each_batch(monkeypatch):
    from textsvc.serving import classifier_batching

    trims = []
    monkeypatch.setattr(classifier_batching, "IDLE_TRIM_S", 0.5)
    monkeypatch.setattr(classifier_batching, "return_freed_memory", lambda: trims.append(1))
    batcher = DynamicBatcher(lambda items: items, max_batch_size=2, max_wait_ms=0, max_queue_size=64)
    for _ in range(3):  # a burst of back-to-back requests
        assert [future.result(timeout=10) for future in batcher.submit_all([1, 2, 3])] == [1, 2, 3]
    assert trims == []  # busy: no trim between batches
    deadline = threading.Event()
    deadline.wait(1.5)  # idle past IDLE_TRIM_S
    assert trims == [1]  # one trim for the burst, none while idle after it
    batcher.submit_all([4])[0].result(timeout=10)
    deadline.wait(1.5)
    assert trims == [1, 1]
    batcher.close()
