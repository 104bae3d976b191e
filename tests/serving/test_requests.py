"""Request parsing without a model: each route's body into its dataclass, the sampling it asks for, the codes it
gets when malformed."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import RequestError
from textsvc.serving.requests import (
    ClassifyParameters,
    CompletionRequest,
    TgiParameters,
    parse_classify,
    parse_completion,
    parse_tgi,
)

CONFIG = ServingConfig(max_inputs=3, max_new_tokens_limit=100)


def test_classify_body_becomes_engine_arguments():
    request = parse_classify({"inputs": "good", "parameters": {"top_k": 1}, "model": "m"}, CONFIG)
    assert request.parameters == ClassifyParameters(top_k=1)
    assert request.arguments == {"name": "m", "texts": ["good"], "top_k": 1, "truncation": True,
                                 "function_to_apply": None}
    assert parse_classify({"inputs": ["a", "b"], "parameters": None}, CONFIG).arguments["texts"] == ["a", "b"]


@pytest.mark.parametrize("parameters, sampled, temperature", [
    ({}, False, 0.0),  # TGI: greedy by default
    ({"do_sample": True}, True, 1.0),
    ({"temperature": 0.5}, True, 0.5),  # a warper set: sampling
    ({"top_k": 5}, True, 1.0),
    ({"top_p": 0.9}, True, 1.0),
    ({"temperature": 1, "top_k": 0, "top_p": 1}, False, 0.0),  # warpers at their neutral values
])
def test_tgi_samples_only_when_asked(parameters, sampled, temperature):
    sampling = parse_tgi({"inputs": "x", "parameters": parameters}, CONFIG, stream=False).sampling
    assert (not sampling.greedy, sampling.temperature) == (sampled, temperature)


def test_tgi_defaults_and_options():
    request = parse_tgi({"inputs": "x"}, CONFIG, stream=False)
    assert request.sampling.max_new_tokens == 64 and request.default_length and not request.stream
    given = parse_tgi({"inputs": "x", "stream": True, "parameters": {
        "max_new_tokens": 5, "stop": ["\n"], "truncate": 4, "details": True, "return_full_text": True,
        "seed": 3, "best_of": 1, "watermark": False, "typical_p": None, "grammar": None}}, CONFIG, stream=False)
    assert (given.sampling.max_new_tokens, given.sampling.stop, given.sampling.seed) == (5, ("\n",), 3)
    assert given.stream and given.details and given.return_full_text and not given.default_length
    assert given.options == {"truncate": 4, "shrink_to_fit": False}
    assert parse_tgi({"inputs": "x"}, CONFIG, stream=True).stream


def test_completion_defaults_are_openai_s():
    request = parse_completion({"prompt": ["x"], "stop": "\n", "n": 1, "echo": False}, CONFIG)
    assert request.prompt == "x" and request.sampling.max_new_tokens == 16 and request.default_length
    assert request.sampling.stop == ("\n",) and request.sampling.temperature == 1.0
    assert not parse_completion({"prompt": "x", "max_tokens": 7}, CONFIG).default_length


BAD_BODIES = [
    (parse_classify, {"inputs": ["a"] * 4}, "too_many_inputs", "inputs"),
    (parse_classify, {"inputs": "a", "parameters": {"function_to_apply": "relu"}}, "invalid_parameter",
     "function_to_apply"),
    (parse_classify, {"inputs": "a", "parameters": {"truncation": 1}}, "invalid_parameter", "truncation"),
    (parse_tgi, {"inputs": "x", "parameters": {"max_new_tokens": 101}}, "invalid_parameter", "max_new_tokens"),
    (parse_tgi, {"inputs": "x", "parameters": {"max_new_tokens": 0}}, "invalid_parameter", "max_new_tokens"),
    (parse_tgi, {"inputs": "x", "parameters": {"temperature": float("inf")}}, "invalid_parameter", "temperature"),
    (parse_tgi, {"inputs": "x", "parameters": {"stop": [""]}}, "invalid_parameter", "stop"),
    (parse_tgi, {"inputs": "x", "parameters": {"grammar": {"type": "json"}}}, "invalid_parameter", "grammar"),
    (parse_tgi, {"inputs": "x", "parameters": {"details": "yes"}}, "invalid_parameter", "details"),
    (parse_tgi, {"inputs": "x", "stream": "yes"}, "invalid_parameter", "stream"),
    (parse_tgi, {"inputs": ["x", "y"]}, "invalid_type", "inputs"),
    (parse_completion, {"prompt": "x", "max_tokens": 101}, "invalid_parameter", "max_new_tokens"),
    (parse_completion, {"prompt": "x", "echo": True}, "invalid_parameter", "echo"),
    (parse_completion, {"prompt": "x", "logprobs": 1}, "invalid_parameter", "logprobs"),
    (parse_completion, {"prompt": "x", "model": 3}, "invalid_parameter", "model"),
    (parse_completion, "x", "invalid_type", None),
]


@pytest.mark.parametrize("parse, body, code, field", BAD_BODIES,
                         ids=[f"{row[0].__name__}-{row[3]}-{i}" for i, row in enumerate(BAD_BODIES)])
def test_bad_bodies_get_their_code_and_field(parse, body, code, field):
    with pytest.raises(RequestError) as error:
        parse(body, CONFIG, **({"stream": False} if parse is parse_tgi else {}))
    assert (error.value.code, error.value.field) == (code, field)


def members(hint) -> set:
    """The types of a union, or the one type."""
    return set(typing.get_args(hint)) if typing.get_origin(hint) in (types.UnionType, typing.Union) else {hint}


@pytest.mark.parametrize("cls", [TgiParameters, CompletionRequest], ids=lambda cls: cls.__name__)
def test_sampling_fields_keep_sampling_config_s_types(cls):
    sampling, hints = typing.get_type_hints(SamplingConfig), typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "sampling" in field.metadata:
            assert members(sampling[field.metadata["sampling"]]) <= members(hints[field.name]), field.name
