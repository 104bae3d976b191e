"""Sampling: logits -> next token through the transformers logits processors, stop rules, and the decode loop.

One path for every causal LM: `stream(model, tokenizer, prompt, config)` yields text pieces as they are made and
`generate(...)` collects them. The loop is written here rather than calling `model.generate()` because serving needs
what `generate()` does not give together: stop strings matched on decoded text and cut from the output, pieces that
never split a character, per-token log-probabilities and a replayable seed, all without a streamer thread.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from textsvc.config.sampling import SamplingConfig
from textsvc.loading import context_length

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
    logprobs: tuple[TokenLogprob, ...] | None


def logits_processors(config: SamplingConfig) -> LogitsProcessorList:
    """The transformers processors for `config`, in `generate()`'s order: penalty, then temperature, top-k, top-p."""
    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if not config.greedy:
        if config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            processors.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p))
    return processors


def pick_token(scores: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> int:
    """The argmax of (1, V) processed scores, or a draw from their softmax."""
    if greedy:
        return int(scores.argmax(dim=-1))
    probabilities = torch.softmax(scores.float(), dim=-1)  # (1, V)
    return int(torch.multinomial(probabilities, 1, generator=generator))


class StopMatcher:
    """Decoded text in, text safe to emit out: cut at the first stop string, hold back a possible stop's start."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = stop
        self.longest = max((len(s) for s in stop), default=0)
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, new_text: str) -> str:
        """Add `new_text`; return the newly safe piece ('' while a stop string may be forming)."""
        search_from = max(self.emitted, len(self.text) - self.longest + 1)
        self.text += new_text
        found = [i for s in self.stop if (i := self.text.find(s, search_from)) != -1]
        if found:
            self.text, self.stopped = self.text[:min(found)], True
            return self.flush()
        held = next((k for k in range(min(self.longest - 1, len(self.text) - self.emitted), 0, -1)
                     if any(s.startswith(self.text[-k:]) for s in self.stop)), 0)
        piece = self.text[self.emitted:len(self.text) - held]
        self.emitted += len(piece)
        return piece

    def flush(self) -> str:
        """Everything not yet emitted (at the end of generation)."""
        piece, self.emitted = self.text[self.emitted:], len(self.text)
        return piece


class IncrementalDecoder:
    """Token ids -> text pieces that never end in half a character.

    Byte-level BPE can split a UTF-8 character across tokens; decoded alone, the first half shows as U+FFFD. A
    few tokens of context are decoded with each new token and only complete text is released (TGI's
    `decode_token`), which also keeps the spaces that some decoders drop at the start of a slice.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int]):
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids)
        self.prefix_offset = max(len(self.ids) - 5, 0)
        self.read_offset = len(self.ids)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes ('' while a character is unfinished)."""
        self.ids.append(token_id)
        return self._release(final=False)

    def flush(self) -> str:
        """Whatever text is still held back."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) > len(prefix) and (final or not text.endswith("\ufffd")):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""


class ModelState:
    """The incremental state of one sequence: a transformers KV cache, or the LSTM's (h, c), as `cache`.

    Each step feeds one token. A model with a fixed context (`limit` positions) that fills it starts again from
    the last half of the text (a context shift), so generation stays linear in the common case.
    """

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.limit = context_length(model)
        self.past = None
        self.length = 0

    @torch.inference_mode()  # not around the whole stream: a suspended generator would leak the mode to its caller
    def feed(self, ids: list[int], history: list[int]) -> torch.Tensor:
        """Run `ids` (the end of `history`) through the model; return the (1, V) logits after the last one."""
        if self.limit is not None and self.length + len(ids) > self.limit:
            self.past, self.length = None, 0
            ids = history[-max(self.limit // 2, 1):]
        device, length = self.model.device, self.length + len(ids)
        output = self.model(input_ids=torch.tensor([ids], device=device), cache=self.past, use_cache=True,
                            attention_mask=torch.ones(1, length, dtype=torch.long, device=device))  # no padding
        self.past, self.length = output.cache, length
        return output.logits[:, -1, :].float()  # (1, V)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, limit: int | None) -> list[int]:
    """The prompt's tokens (its last `limit - 1` when too long); an empty prompt starts from BOS or EOS."""
    ids = tokenizer(prompt, verbose=False)["input_ids"] if prompt else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [start if start is not None else 0]
    return ids[-(limit - 1):] if limit is not None and len(ids) >= limit else ids


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a text: the tokenizer's EOS and the model's generation config's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


class Sequence:
    """One generation's bookkeeping apart from the model: logits in, next token and the text now safe to emit out.

    Shared by the one-sequence loop below and the batched decoding of `textsvc.decoding`: what a request gets does
    not depend on which of them ran it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt: list[int], config: SamplingConfig,
                 ends: set[int], device: torch.device):
        self.tokenizer, self.config, self.ends = tokenizer, config, ends
        self.history, self.num_prompt = list(prompt), len(prompt)
        self.seed = None if config.greedy else (config.seed if config.seed is not None
                                                else random.SystemRandom().randrange(2**63))
        self.generator = None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)
        self.processors, self.stops = logits_processors(config), StopMatcher(config.stop)
        self.decoder = IncrementalDecoder(tokenizer, self.history)
        self.token_ids: list[int] = []  # live: grows as tokens are picked
        self.token_logprobs: list[TokenLogprob] = []  # live, when config.logprobs
        self.finish: str | None = None  # one of FINISH_REASONS once done

    @property
    def done(self) -> bool:
        return self.finish is not None

    def step(self, logits: torch.Tensor) -> str:
        """Pick the next token from the (1, V) logits after the text so far; return the text it releases."""
        history = torch.tensor([self.history], device=logits.device)
        scores = self.processors(history, logits.clone()) if self.processors else logits
        token = pick_token(scores, self.config.greedy, self.generator)
        self.token_ids.append(token)
        if self.config.logprobs:
            logprob = torch.log_softmax(logits, dim=-1)[0, token].item()
            special = token in self.ends or token in self.tokenizer.all_special_ids
            self.token_logprobs.append(TokenLogprob(token, self.tokenizer.decode([token]), logprob, special))
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
        return GenerationResult(self.stops.text, tuple(self.token_ids), self.finish, self.num_prompt, self.seed,
                                tuple(self.token_logprobs) if self.config.logprobs else None)


class TextStream:
    """Iterate for text pieces as they are produced; once exhausted, `result` holds the whole generation."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
                 config: SamplingConfig):
        self.model, self.tokenizer, self.prompt, self.config = model, tokenizer, prompt, config
        self.result: GenerationResult | None = None
        self.token_ids: list[int] = []  # live: grows as tokens are picked (the server streams token events)
        self.token_logprobs: list[TokenLogprob] = []  # live, when config.logprobs

    def __iter__(self) -> Iterator[str]:
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        state = ModelState(self.model)
        sequence = Sequence(self.tokenizer, prompt_ids(self.tokenizer, self.prompt, state.limit), self.config,
                            eos_ids(self.model, self.tokenizer), self.model.device)
        self.token_ids, self.token_logprobs = sequence.token_ids, sequence.token_logprobs
        logits = state.feed(sequence.history, sequence.history)
        while True:
            if piece := sequence.step(logits):
                yield piece
            if sequence.done:
                break
            logits = state.feed(sequence.history[-1:], sequence.history)
        self.result = sequence.result()


def stream(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
           config: SamplingConfig) -> TextStream:
    """An iterator of the text pieces that continue `prompt` (the model should be in eval mode)."""
    return TextStream(model, tokenizer, prompt, config)


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
             config: SamplingConfig) -> GenerationResult:
    """The whole continuation of `prompt`, with its finish reason, token ids and (on request) log-probabilities."""
    pieces = stream(model, tokenizer, prompt, config)
    for _ in pieces:
        pass
    return pieces.result
