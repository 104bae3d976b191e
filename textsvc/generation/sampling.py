"""Sampling: logits -> next token through transformers' logits processors, seeded so that a request replays."""

from __future__ import annotations

import random

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from textsvc.config.sampling import SamplingConfig


class Temperature(LogitsProcessor):
    """transformers' TemperatureLogitsWarper, safe for tiny temperatures: scores less their maximum, then divided, the
    maximum kept at 0. Dividing raw scores by 1e-200 (0 in float32) overflows to inf and NaN, whose softmax fails
    (fuzzing /v1/completions found it as a 500); shifted, the others fall to -inf at worst, so a tiny temperature
    samples the argmax, its limit. Softmax, top-k and top-p are unchanged by the shift."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        shifted = scores - scores.max(dim=-1, keepdim=True).values
        return torch.where(shifted == 0, shifted, shifted / self.temperature)


def logits_processors(config: SamplingConfig) -> LogitsProcessorList:
    """The transformers processors for `config`, in `generate()`'s order: penalty, then temperature, top-k, top-p."""
    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if not config.greedy:
        if config.temperature != 1.0:
            processors.append(Temperature(config.temperature))
        if config.top_k:
            processors.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p))
    return processors


class Sampler:
    """One sequence's token choice: `config`'s processors, then the argmax (greedy) or a draw from a seeded generator.

    `seed` is the one used (drawn at random when the config gives none), so that a request can be replayed; None for
    greedy decoding, which needs none.
    """

    def __init__(self, config: SamplingConfig, device: torch.device):
        self.greedy, self.processors = config.greedy, logits_processors(config)
        self.seed = None if config.greedy else (config.seed if config.seed is not None
                                                else random.SystemRandom().randrange(2**63))
        self.generator = None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with no processor: the argmax of the raw logits, which a batch computes for all its rows at once."""
        return self.greedy and not self.processors

    def pick(self, history: list[int], logits: torch.Tensor) -> int:
        """The token that follows `history`, given the (1, V) logits after it (left unchanged)."""
        scores = logits
        if self.processors:  # the penalty reads the text so far; a processor may write into its scores
            scores = self.processors(torch.tensor([history], device=logits.device), logits.clone())
        if self.greedy:
            return int(scores.argmax(dim=-1))
        probabilities = torch.softmax(scores.float(), dim=-1)  # (1, V)
        return int(torch.multinomial(probabilities, 1, generator=self.generator))
