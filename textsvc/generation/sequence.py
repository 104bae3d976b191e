"""One generation's bookkeeping apart from the model: logits in, the next token and the text now safe to emit out.

Shared by the one-sequence loop (`generation.loop`) and the serving worker's batched decoding: what a request gets
does not depend on which of them ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from textsvc.config.sampling import SamplingConfig
from textsvc.generation.sampling import Sampler, pick_tokens
from textsvc.generation.stopping import StopMatcher
from textsvc.generation.streaming import TextDecoder

FINISH_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token and its log-probability under the model (before temperature and filtering)."""

    token_id: int
    token: str
    logprob: float
    special: bool = False  # an end-of-text or other special token (its text is never part of the output)


@dataclass(frozen=True)
class GenerationResult:
    """The generated text (cut before any stop string) and how it was made.

    `token_ids` and `logprobs` hold every generated token, including those that spelled a stop string.
    """

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # one of FINISH_REASONS
    prompt_tokens: int
    seed: int | None  # the seed used (drawn at random when none was given); None for greedy decoding
    logprobs: tuple[TokenLogprob, ...] | None  # only when the config asked for them


def next_tokens(sequences: list[DecodingSequence], logits: torch.Tensor) -> list[int]:
    """The next token of each sequence, from the (B, V) logits after each (row i is sequence i's), the whole batch in
    one pass."""
    return pick_tokens([sequence.sampler for sequence in sequences], [sequence.history for sequence in sequences],
                       logits)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, limit: int | None) -> list[int]:
    """The prompt's tokens (its last `limit - 1` when too long); an empty prompt starts from BOS or EOS."""
    ids = tokenizer(prompt, verbose=False)["input_ids"] if prompt else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [start if start is not None else 0]
    return ids[-(limit - 1):] if limit is not None and len(ids) >= limit else ids


class DecodingSequence:
    """A prompt and the tokens generated after it: each `step` picks a token, applies the stop rules and returns the
    text released. Log-probabilities (a full-vocabulary log_softmax per token) are computed only when
    `config.logprobs` asks for them."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt: list[int], config: SamplingConfig,
                 ends: set[int], device: torch.device):
        self.tokenizer, self.config, self.ends = tokenizer, config, ends
        self.history, self.num_prompt = list(prompt), len(prompt)
        self.sampler, self.stops = Sampler(config, device), StopMatcher(config.stop)
        self.decoder = TextDecoder(tokenizer, self.history)
        self.token_ids: list[int] = []  # live: grows as tokens are picked
        self.logprobs: list[float] = []  # live, when config.logprobs
        self.finish: str | None = None  # one of FINISH_REASONS once done

    @property
    def done(self) -> bool:
        return self.finish is not None

    def step(self, token: int, logits: torch.Tensor) -> str:
        """Take `token` (picked by `next_tokens`) after the (1, V) `logits`; return the text it releases."""
        self.token_ids.append(token)
        if self.config.logprobs:
            self.logprobs.append(torch.log_softmax(logits, dim=-1)[0, token].item())
        if token in self.ends:
            self.finish = "eos"
            return self._close()
        self.history.append(token)
        piece = self.stops.feed(self.decoder.add(token))
        if self.stops.stopped:
            self.finish = "stop"
            return piece
        if len(self.token_ids) >= self.config.max_new_tokens:
            self.finish = "length"
            return piece + self._close()
        return piece

    def _close(self) -> str:
        """The text still held back at the end; a stop string may yet appear in it."""
        tail = self.stops.feed(self.decoder.flush())
        if self.stops.stopped:
            self.finish = "stop"
        return tail + self.stops.flush()

    def result(self) -> GenerationResult:
        """The finished generation."""
        return GenerationResult(self.stops.text, tuple(self.token_ids), self.finish, self.num_prompt,
                                self.sampler.seed, self._token_logprobs() if self.config.logprobs else None)

    def _token_logprobs(self) -> tuple[TokenLogprob, ...]:
        """Each token with its own text, decoded once at the end rather than at every step."""
        special = self.ends | set(self.tokenizer.all_special_ids)
        texts = self.tokenizer.batch_decode([[token] for token in self.token_ids])
        return tuple(TokenLogprob(token, text, logprob, token in special)
                     for token, text, logprob in zip(self.token_ids, texts, self.logprobs, strict=True))
