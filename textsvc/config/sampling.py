"""Sampling configuration: how a generator picks its next tokens, checked as it arrives from JSON or flags.

The rules on `max_new_tokens` live here: its default and bounds on the field, the server's cap in `served_bounds`,
the room left in a model's context in `fit_to_context`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from textsvc.config.common import check_range, coerce, field_types, require, setting
from textsvc.errors import ErrorCode, RequestError


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is picked. `temperature = 0` is greedy; `top_k = 0` and `top_p = 1` are off.

    `stop` strings end the text where they first appear in the decoded output (they are not returned);
    the same `seed` and request give the same text; `logprobs` asks for each token's log-probability.
    """

    max_new_tokens: int = setting(64, "tokens to generate at most", minimum=1)  # capped by `served_bounds`
    temperature: float = setting(1.0, "softmax temperature; 0 is greedy decoding", minimum=0)
    top_k: int = setting(0, "sample among the k likeliest tokens; 0 is off", minimum=0)
    top_p: float = setting(1.0, "sample within the smallest set of tokens holding this probability; 1 is off",
                           exclusiveMinimum=0, maximum=1)
    repetition_penalty: float = setting(1.0, "CTRL's penalty on tokens already in the text (Keskar et al. 2019); "
                                             "1 is off", exclusiveMinimum=0)
    stop: tuple[str, ...] = setting((), "comma-separated stop strings (a config file can give a list)",
                                    maxItems=16, items={"minLength": 1})
    seed: int | None = setting(None, "seed of the sampler: the same seed and request give the same text",
                               minimum=0, maximum=2**63 - 1)
    logprobs: bool = setting(False, "return each token's log-probability")

    def __post_init__(self):
        if isinstance(self.stop, str):  # one stop string given bare
            object.__setattr__(self, "stop", (self.stop,))
        # before `coerce`, which would read [3] as ("3",)
        require(isinstance(self.stop, (list, tuple)) and all(isinstance(s, str) for s in self.stop),
                "stop", "must be a list of strings")
        hints = field_types(SamplingConfig)
        for field in dataclasses.fields(self):  # requests arrive as JSON: check types before comparing values
            value = coerce(getattr(self, field.name), field, hints[field.name])
            check_range(field.name, value, field.metadata.get("schema", {}))
            object.__setattr__(self, field.name, value)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def served_bounds(max_new_tokens_limit: int) -> dict[str, dict]:
    """The server's caps on request fields, as JSON Schema bounds by SamplingConfig field (checked, and documented)."""
    return {"max_new_tokens": {"maximum": max_new_tokens_limit}}


def fit_to_context(config: SamplingConfig, prompt_tokens: int, context: int | None, shrink: bool) -> SamplingConfig:
    """`config` for a prompt of `prompt_tokens` in a model of `context` positions (None: unbounded).

    `shrink` lowers a `max_new_tokens` that the request left at its default to the room left (TGI does the same);
    otherwise prompt and new tokens beyond the context are `input_too_long`.
    """
    if context is None:
        return config
    if shrink and prompt_tokens < context:
        config = dataclasses.replace(config, max_new_tokens=min(config.max_new_tokens, context - prompt_tokens))
    if prompt_tokens + config.max_new_tokens > context:
        raise RequestError(f"inputs: {prompt_tokens} tokens + max_new_tokens {config.max_new_tokens} exceed the "
                           f"model's context of {context}; shorten the prompt, lower max_new_tokens or set truncate",
                           code=ErrorCode.INPUT_TOO_LONG, field="inputs")
    return config
