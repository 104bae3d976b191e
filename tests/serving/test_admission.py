"""The bounded admission queue that classifier and generator workers share: all or none, refusal, drain."""

from __future__ import annotations

import threading
import time

import pytest

from textsvc.errors import OverloadedError
from textsvc.serving.admission import AdmissionQueue


def test_a_request_is_queued_whole_or_refused_whole():
    depths = []
    queue = AdmissionQueue(3, name="m", unit="texts", retry_after_s=7, on_depth=depths.append)
    queue.put_all([1, 2])
    with pytest.raises(OverloadedError) as error:
        queue.put_all([3, 4])  # would make 4: none of them is queued
    assert (error.value.code, error.value.retry_after_s) == ("overloaded", 7)
    queue.put_all([3])
    assert queue.take(10, block=False) == [1, 2, 3] and depths == [2, 3, 0]


def test_take_waits_for_a_first_item_then_gathers_a_batch():
    queue = AdmissionQueue(10, name="m")
    threading.Timer(0.05, queue.put_all, [[1]]).start()
    threading.Timer(0.1, queue.put_all, [[2]]).start()
    started = time.monotonic()
    assert queue.take(2, gather_s=5) == [1, 2]  # returns once the batch is full, not after gather_s
    assert time.monotonic() - started < 2
    queue.put_all([3])
    assert queue.take(2, gather_s=0.05) == [3]  # the first item's wait bounds the batch's latency
    assert queue.take(2, block=False) == []


def test_take_gives_up_after_idle_s_without_an_item():
    queue = AdmissionQueue(10, name="m")
    started = time.monotonic()
    assert queue.take(2, idle_s=0.1) == []
    assert 0.1 <= time.monotonic() - started < 2
    threading.Timer(0.05, queue.put_all, [[1]]).start()
    assert queue.take(2, idle_s=5) == [1]  # an item that comes in time is taken at once


def test_close_refuses_new_items_and_drains_the_waiting_ones():
    queue = AdmissionQueue(10, name="m")
    queue.put_all([1, 2, 3])
    queue.close()
    with pytest.raises(OverloadedError):
        queue.put_all([4])
    assert queue.take(2) == [1, 2] and queue.take(2, gather_s=5) == [3] and queue.take(2) is None


def test_close_wakes_a_waiting_worker():
    queue, taken = AdmissionQueue(10, name="m"), []
    worker = threading.Thread(target=lambda: taken.append(queue.take(1)))
    worker.start()
    time.sleep(0.05)
    queue.close()
    worker.join(5)
    assert taken == [None]
