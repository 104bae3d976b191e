"""Stop rules: a generation ends at an end-of-text token or at the first stop string in its decoded text."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a text: the tokenizer's EOS and the model's generation config's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


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
