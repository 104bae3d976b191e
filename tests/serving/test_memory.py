"""The serving process's memory settings: set where the user has not set them, left alone where they have."""

from __future__ import annotations

import subprocess
import sys

PROBE = ("import os; from textsvc.serving.memory import bound_memory_growth; bound_memory_growth(); "
         "print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])")


def run_probe(**environ: str) -> str:
    import os

    done = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **environ}, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_kernel_cache_is_capped_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    assert run_probe() == "64"
    assert run_probe(ONEDNN_PRIMITIVE_CACHE_CAPACITY="512") == "512"
    assert run_probe(MALLOC_MMAP_THRESHOLD_="65536") == "64"  # the allocator's own setting skips only mallopt
