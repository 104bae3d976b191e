"""The decode loop for one sequence: `stream(model, tokenizer, prompt, config)` yields text pieces as they are made
and `generate(...)` collects them.

The loop is written here rather than calling `model.generate()` because serving needs what `generate()` does not
give together: stop strings matched on decoded text and cut from the output, pieces that never split a character,
per-token log-probabilities and a replayable seed, all without a streamer thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textsvc.config.sampling import SamplingConfig
from textsvc.generation.sequence import DecodingSequence, GenerationResult, next_tokens, prompt_ids
from textsvc.generation.stopping import eos_ids
from textsvc.loading import context_length


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


class TextStream:
    """Iterate for text pieces as they are produced; once exhausted, `result` holds the whole generation."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
                 config: SamplingConfig):
        self.model, self.tokenizer, self.prompt, self.config = model, tokenizer, prompt, config
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        state = ModelState(self.model)
        sequence = DecodingSequence(self.tokenizer, prompt_ids(self.tokenizer, self.prompt, state.limit),
                                    self.config, eos_ids(self.model, self.tokenizer), self.model.device)
        logits = state.feed(sequence.history, sequence.history)
        while True:
            if piece := sequence.step(next_tokens([sequence], logits)[0], logits):
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
