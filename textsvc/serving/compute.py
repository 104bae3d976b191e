"""Where the CPU models' torch work runs: one long-lived compute thread for the whole process, and short-lived
threads for loading.

torch's CPU thread pool is libgomp's, and libgomp gives every thread that runs a parallel op a team of its own. Once
the live teams hold more threads than the machine has cores, libgomp stops letting idle team members spin between
parallel regions: each region then waits for sleeping threads to wake. Measured on the 2-core CPU with SmolLM2-135M,
a worker thread decoding beside a second team (the loader's, or another model's worker) made 15.5 tokens/s instead of
26.5. So every CPU model's forward passes, sampling and cache moves run on one thread (one team, however many models
are served), and loading runs on a thread that ends, which frees its team. GPU models keep their own worker threads:
their kernels are asynchronous and use no such pool.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

T = TypeVar("T")
_lock = threading.Lock()
_thread: _ComputeThread | None = None


class _ComputeThread:
    """A daemon thread that runs the functions handed to it, one at a time, in inference mode."""

    def __init__(self):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="textsvc-compute", daemon=True)
        self.thread.start()

    def call(self, function: Callable[..., T], *args) -> T:
        if threading.current_thread() is self.thread:  # a nested call would wait on itself
            return function(*args)
        future: Future = Future()
        self._tasks.put((future, function, args))
        return future.result()

    def _run(self) -> None:
        with torch.inference_mode():  # thread-local: entered once here rather than around each task
            while True:
                future, function, args = self._tasks.get()
                try:
                    future.set_result(function(*args))
                except BaseException as error:  # the caller gets it; the thread lives on
                    future.set_exception(error)


def on_compute_thread(function: Callable[..., T], *args) -> T:
    """`function(*args)` run on the process's compute thread (started on first use); its result, or its error."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = _ComputeThread()
    return _thread.call(function, *args)


def runner_for(device: torch.device) -> Callable[..., T]:
    """How a worker for a model on `device` runs its torch work: on the compute thread for the CPU, else directly."""
    return on_compute_thread if device.type == "cpu" else _call


def _call(function: Callable[..., T], *args) -> T:
    return function(*args)


def in_passing_thread(function: Callable[..., T], *args) -> T:
    """`function(*args)` run on a new thread that ends when it returns, so that the thread pool team its torch ops
    start ends with it (loading casts and copies weights in parallel); its result, or its error."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:
            future.set_exception(error)

    thread = threading.Thread(target=run, name="textsvc-load-model", daemon=True)
    thread.start()
    thread.join()
    return future.result()
