"""The server's memory allocator: jemalloc where it is installed, which keeps a long-running server's memory flat.

Under the serving benchmark's repeated loads, glibc's malloc let the server's resident memory grow by a few MiB a
round, less each round, while Python's own allocations (tracemalloc) stayed flat and `malloc_trim` gave nothing
back; with jemalloc preloaded it stayed flat, and speed moved both ways within the machine's noise (README,
"Memory and the allocator"). An allocator is chosen before a process starts, so `serve` starts itself again, once,
with LD_PRELOAD naming jemalloc, before it loads anything: what Intel's `ipexrun` launcher does for PyTorch on CPUs.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from textsvc.errors import ConfigError

log = logging.getLogger(__name__)
RESTARTED = "TEXTSVC_RESTARTED_WITH_ALLOCATOR"  # set in the restarted process's environment: never restart twice


def find_jemalloc() -> str | None:
    """jemalloc's shared library as the dynamic linker knows it (`libjemalloc.so.2`), or None."""
    return ctypes.util.find_library("jemalloc")


def allocator_in_use() -> str:
    """"jemalloc" when this process has jemalloc mapped, else "system" (the C library's malloc)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def preload_for(choice: str, environ: Mapping[str, str], library: str | None) -> str | None:
    """The LD_PRELOAD to start again with for allocator `choice`, or None to go on in this process."""
    if choice == "system" or environ.get(RESTARTED) or not sys.platform.startswith("linux"):
        return None
    if library is None:
        if choice == "jemalloc":
            raise ConfigError("allocator: jemalloc is not installed (Debian and Ubuntu: apt install libjemalloc2); "
                              "use --allocator system or auto", field="allocator")
        return None
    return " ".join(filter(None, [environ.get("LD_PRELOAD"), library]))


def use_allocator(choice: str, program_argv: list[str] | None) -> None:
    """Start this `textsvc` command again with jemalloc preloaded when `choice` asks for it and it is not in use.

    `program_argv` is the command line to start again with: None when the command was called from Python (`main`
    with arguments), whose process is not ours to replace."""
    if program_argv is None or allocator_in_use() == "jemalloc":
        return
    preload = preload_for(choice, os.environ, find_jemalloc())
    if preload is None:
        if os.environ.get(RESTARTED):
            log.warning("allocator: %s did not load; going on with the C library's malloc", os.environ["LD_PRELOAD"])
        return
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "textsvc.cli", *program_argv],
              {**os.environ, "LD_PRELOAD": preload, RESTARTED: "1"})
