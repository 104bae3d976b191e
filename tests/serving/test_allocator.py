"""The server's memory allocator: when `serve` starts itself again with jemalloc preloaded, and when it does not."""

from __future__ import annotations

import sys

import pytest

from textsvc.errors import ConfigError
from textsvc.serving.allocator import RESTARTED, preload_for

LINUX = sys.platform.startswith("linux")


@pytest.mark.skipif(not LINUX, reason="LD_PRELOAD is the Linux dynamic linker's")
@pytest.mark.parametrize("choice", ["auto", "jemalloc"])
def test_jemalloc_is_preloaded_where_installed_after_what_was_preloaded(choice):
    assert preload_for(choice, {}, "libjemalloc.so.2") == "libjemalloc.so.2"
    assert preload_for(choice, {"LD_PRELOAD": "libother.so"}, "libjemalloc.so.2") == "libother.so libjemalloc.so.2"


def test_no_restart_for_the_system_allocator_or_a_second_time():
    assert preload_for("system", {}, "libjemalloc.so.2") is None
    assert preload_for("auto", {RESTARTED: "1"}, "libjemalloc.so.2") is None  # its preload failed: go on, no loop


def test_auto_goes_on_without_jemalloc_and_jemalloc_asked_for_is_an_error():
    assert preload_for("auto", {}, None) is None
    if LINUX:
        with pytest.raises(ConfigError) as error:
            preload_for("jemalloc", {}, None)
        assert error.value.field == "allocator" and "libjemalloc2" in error.value.message
