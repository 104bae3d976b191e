"""Stop rules: the stop-string matcher's truth table."""

from __future__ import annotations

import pytest

from textsvc.generation.stopping import StopMatcher


@pytest.mark.parametrize("stop, feeds, pieces, text, stopped", [
    ((), ["ab", "c"], ["ab", "c"], "abc", False),
    (("END",), ["abcE", "N", "D tail"], ["abc", "", ""], "abc", True),
    (("END",), ["abcE", "N", "X"], ["abc", "", "ENX"], "abcENX", False),
    (("lo w",), ["Hel", "lo wo", "rld"], ["He", "l"], "Hel", True),  # the match spans two feeds
    (("\n\n", "."), ["one\n", "two. three"], ["one", "\ntwo"], "one\ntwo", True),  # the first stop to appear wins
])
def test_stop_matcher(stop, feeds, pieces, text, stopped):
    matcher = StopMatcher(stop)
    got = []
    for feed in feeds:
        got.append(matcher.feed(feed))
        if matcher.stopped:
            break
    got[-1] += matcher.flush()
    assert got == pieces and matcher.text == text and matcher.stopped is stopped
