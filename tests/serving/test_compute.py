"""Where the CPU models' torch work runs: every forward pass of every served CPU model on one compute thread, and
loading on threads that end."""

from __future__ import annotations

import threading

import pytest

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.serving.compute import in_passing_thread, on_compute_thread
from textsvc.serving.engine import Engine


def test_every_cpu_forward_pass_runs_on_the_one_compute_thread(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), device="cpu", dtype="float32"))
    engine.load()
    threads = set()
    hooks = [served.loaded.model.register_forward_hook(lambda *_: threads.add(threading.current_thread().name))
             for served in engine.models.values()]
    try:
        engine.classify("sentiment-bert", ["a fine film", "a dull one"])
        engine.classify("sentiment-lstm", ["a fine film"])
        for generator in ("tiny-gpt", "tiny-lstm-lm"):
            assert engine.generate(generator, "the", SamplingConfig(max_new_tokens=3, temperature=0)) is not None
    finally:
        for hook in hooks:
            hook.remove()
        engine.close()
    assert threads == {"textsvc-compute"}


def test_compute_thread_returns_results_and_raises_errors_in_the_caller():
    assert on_compute_thread(lambda a, b: (a + b, threading.current_thread().name), 2, 3) == (5, "textsvc-compute")
    assert on_compute_thread(on_compute_thread, lambda: 7) == 7  # a nested call runs in place rather than deadlock
    with pytest.raises(ZeroDivisionError):
        on_compute_thread(lambda: 1 / 0)
    assert on_compute_thread(lambda: 1) == 1  # the thread outlives a failure


def test_passing_thread_ends_after_its_call():
    seen = []
    assert in_passing_thread(lambda: seen.append(threading.current_thread()) or "done") == "done"
    assert not seen[0].is_alive() and seen[0] is not threading.current_thread()
    with pytest.raises(ValueError):
        in_passing_thread(int, "not a number")
