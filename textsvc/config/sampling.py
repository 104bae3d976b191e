"""Sampling configuration: how a generator picks its next tokens, checked as it arrives from JSON or flags."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from textsvc.config.common import coerce, require, setting


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is picked. `temperature = 0` is greedy; `top_k = 0` and `top_p = 1` are off.

    `stop` strings end the text where they first appear in the decoded output (they are not returned);
    the same `seed` and request give the same text; `logprobs` asks for each token's log-probability.
    """

    max_new_tokens: int = setting(64, "tokens to generate at most")
    temperature: float = setting(1.0, "softmax temperature; 0 is greedy decoding")
    top_k: int = setting(0, "sample among the k likeliest tokens; 0 is off")
    top_p: float = setting(1.0, "sample within the smallest set of tokens holding this probability; 1 is off")
    repetition_penalty: float = setting(1.0, "CTRL's penalty on tokens already in the text (Keskar et al. 2019); "
                                             "1 is off")
    stop: tuple[str, ...] = setting((), "comma-separated stop strings (a config file can give a list)")
    seed: int | None = setting(None, "seed of the sampler: the same seed and request give the same text")
    logprobs: bool = setting(False, "return each token's log-probability")

    def __post_init__(self):
        if isinstance(self.stop, str):  # one stop string given bare
            object.__setattr__(self, "stop", (self.stop,))
        require(isinstance(self.stop, (list, tuple)) and all(isinstance(s, str) and s for s in self.stop),
                "stop", "must be a list of non-empty strings")
        hints = typing.get_type_hints(SamplingConfig)
        for field in dataclasses.fields(self):  # requests arrive as JSON: check types before comparing values
            object.__setattr__(self, field.name, coerce(getattr(self, field.name), field, hints[field.name]))
        require(self.max_new_tokens > 0, "max_new_tokens", "must be positive")
        require(0 <= self.temperature < float("inf"), "temperature", "must be >= 0 (0 is greedy)")
        require(self.top_k >= 0, "top_k", "must be >= 0 (0 is off)")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(0 < self.repetition_penalty < float("inf"), "repetition_penalty", "must be positive")
        require(len(self.stop) <= 16, "stop", "at most 16 stop strings")
        require(self.seed is None or 0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
