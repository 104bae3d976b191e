"""Sampling: (B, V) logits -> one next token per row, each row under its own settings and seeded generator, in one
pass over the batch on the logits' device.

transformers' logits processors take one temperature, top-k and top-p for a whole batch; a serving batch mixes
requests with settings of their own, so the same steps are written here over per-row settings, in `generate()`'s
order and with its definitions (CTRL's repetition penalty, then temperature, top-k, top-p). The draw is the
exponential race (argmax of p / E with E ~ Exp(1) per token, which picks token i with probability p_i; vLLM samples
seeded rows the same way): each row's noise comes from its own generator, so a row's token depends on its logits
and its seed alone, never on the other rows of its batch, and a seeded request gives the same text alone or batched.
"""

from __future__ import annotations

import random

import torch

from textsvc.config.sampling import SamplingConfig


class Sampler:
    """One sequence's sampling settings and its seeded generator.

    `seed` is the one used (drawn at random when the config gives none), so that a request can be replayed; None for
    greedy decoding, which needs none.
    """

    def __init__(self, config: SamplingConfig, device: torch.device):
        self.greedy, self.temperature = config.greedy, config.temperature
        self.top_k, self.top_p, self.penalty = config.top_k, config.top_p, config.repetition_penalty
        self.seed = None if config.greedy else (config.seed if config.seed is not None
                                                else random.SystemRandom().randrange(2**63))
        self.generator = None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


def pick_tokens(samplers: list[Sampler], histories: list[list[int]], logits: torch.Tensor) -> list[int]:
    """The next token of each row of the (B, V) `logits` (left unchanged), row i following `histories[i]` under
    `samplers[i]`; one host sync for the batch."""
    scores = logits.float()  # (B, V)
    if any(sampler.penalty != 1.0 for sampler in samplers):
        scores = _penalize(scores, histories, [sampler.penalty for sampler in samplers])
    tokens = scores.argmax(dim=-1)  # (B,) the greedy rows' picks
    drawn = [row for row, sampler in enumerate(samplers) if not sampler.greedy]
    if drawn:
        rows = torch.tensor(drawn, device=scores.device)
        tokens[rows] = _draw(scores[rows], [samplers[row] for row in drawn])
    return tokens.tolist()


def _penalize(scores: torch.Tensor, histories: list[list[int]], penalties: list[float]) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019), as transformers applies it: the score of every token already
    in a row's text is divided by the row's penalty when positive, multiplied when negative."""
    longest = max(len(history) for history in histories)
    # (B, T) each row's tokens, padded by repeating its first one (a token penalized twice gets the same value)
    ids = torch.tensor([history + history[:1] * (longest - len(history)) for history in histories],
                       device=scores.device)
    penalty = torch.tensor(penalties, device=scores.device)[:, None]  # (B, 1)
    seen = scores.gather(1, ids)
    return scores.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))


def _draw(scores: torch.Tensor, samplers: list[Sampler]) -> torch.Tensor:
    """(b,) tokens drawn from the (b, V) scores after each row's temperature, top-k and top-p."""
    device = scores.device
    temperature = torch.tensor([sampler.temperature for sampler in samplers], device=device)[:, None]  # (b, 1)
    # less the maximum, then divided: a tiny temperature sends the others to -inf instead of overflowing the maximum
    # to inf (whose softmax is NaN; fuzzing /v1/completions found it as a 500), so it samples the argmax, its limit
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    scores = torch.where(shifted == 0, shifted, shifted / temperature)
    top_k = [min(sampler.top_k, scores.shape[-1]) for sampler in samplers]
    if any(top_k):
        kth = scores.topk(max(top_k), dim=-1).values  # (b, k) descending
        k = torch.tensor(top_k, device=device)[:, None]
        threshold = kth.gather(1, (k - 1).clamp(min=0)).masked_fill(k == 0, -torch.inf)  # (b, 1); 0 is off
        scores = scores.masked_fill(scores < threshold, -torch.inf)
    if any(sampler.top_p < 1.0 for sampler in samplers):
        top_p = torch.tensor([sampler.top_p for sampler in samplers], device=device)[:, None]
        ascending, order = scores.sort(dim=-1)
        remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p  # (b, V) the tail outside the top-p mass
        remove[:, -1] = False  # the likeliest token always stays
        scores = scores.masked_fill(remove.scatter(1, order, remove), -torch.inf)
    probabilities = scores.softmax(dim=-1)  # (b, V)
    noise = torch.stack([torch.empty_like(probabilities[0]).exponential_(generator=sampler.generator)
                         for sampler in samplers])  # (b, V) each row from its own generator
    # a draw of exactly 0 would make 0 / 0 = NaN for a removed token, and argmax would pick the NaN
    return (probabilities / noise.clamp_(min=torch.finfo(noise.dtype).tiny)).argmax(dim=-1)
