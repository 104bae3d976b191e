"""Bounds checked from the fields' JSON Schema keywords, and the rules on max_new_tokens in config/sampling.py:
default and bounds on the field, the server's cap, the room left in a model's context."""

from __future__ import annotations

import pytest

from textsvc.config.common import check_range
from textsvc.config.sampling import SamplingConfig, fit_to_context, served_bounds
from textsvc.errors import ConfigError, RequestError


@pytest.mark.parametrize("max_new_tokens, prompt_tokens, context, shrink, fitted", [
    (64, 10, None, True, 64),  # no fixed context: unchanged
    (64, 10, 100, True, 64),  # fits
    (64, 50, 100, True, 50),  # a default length shrinks to the room left
    (64, 36, 100, False, 64),  # exactly full
    (8, 99, 100, True, 1),
])
def test_fit_to_context(max_new_tokens, prompt_tokens, context, shrink, fitted):
    config = SamplingConfig(max_new_tokens=max_new_tokens)
    assert fit_to_context(config, prompt_tokens, context, shrink).max_new_tokens == fitted


@pytest.mark.parametrize("max_new_tokens, prompt_tokens, shrink", [(64, 50, False), (4, 100, True), (4, 120, True)])
def test_prompt_and_new_tokens_beyond_the_context_are_too_long(max_new_tokens, prompt_tokens, shrink):
    with pytest.raises(RequestError) as error:
        fit_to_context(SamplingConfig(max_new_tokens=max_new_tokens), prompt_tokens, 100, shrink)
    assert (error.value.code, error.value.field) == ("input_too_long", "inputs")


def test_the_server_caps_max_new_tokens():
    bounds = served_bounds(512)["max_new_tokens"]
    check_range("max_new_tokens", 512, bounds)
    with pytest.raises(ConfigError) as error:
        check_range("max_new_tokens", 513, bounds)
    assert error.value.field == "max_new_tokens"


@pytest.mark.parametrize("value, schema, ok", [
    (0, {"minimum": 0}, True), (-1, {"minimum": 0}, False), (0, {"exclusiveMinimum": 0}, False),
    (1, {"maximum": 1}, True), (1.5, {"maximum": 1}, False), (2, {"exclusiveMaximum": 2}, False),
    (float("nan"), {}, False), (float("inf"), {}, False), (None, {"minimum": 5}, True),
    (("a", "b"), {"maxItems": 1}, False), (("a", ""), {"items": {"minLength": 1}}, False),
    ("softmax", {"enum": ["softmax"]}, True), ("relu", {"enum": ["softmax"]}, False),
])
def test_check_range(value, schema, ok):
    if ok:
        check_range("field", value, schema)
    else:
        with pytest.raises(ConfigError, match="^field: "):
            check_range("field", value, schema)
