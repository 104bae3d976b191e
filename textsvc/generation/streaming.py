"""Streamed text: token ids in, text pieces out that never end in half a character (tokenizers' DecodeStream)."""

from __future__ import annotations

from tokenizers.decoders import DecodeStream
from transformers import PreTrainedTokenizerFast

PROMPT_CONTEXT = 5  # prompt tokens the decoder starts from: whether a piece starts with a space depends on them


class TextDecoder:
    """Token ids -> text pieces, each of whole characters.

    Byte-level BPE can split a UTF-8 character across tokens; decoded alone, its first half shows as U+FFFD.
    `DecodeStream` (TGI's `decode_token`, in the tokenizers library) holds such tokens back until the character is
    whole, and skips special tokens. It has no end of stream, so `flush` releases what it still holds.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, prompt_ids: list[int]):
        self.tokenizer, self.backend = tokenizer, tokenizer.backend_tokenizer
        context = list(prompt_ids[-PROMPT_CONTEXT:])
        self.stream = DecodeStream(ids=context, skip_special_tokens=True)
        self.released, self.held = context, []  # the ids of the last piece (context for `flush`), those held back

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes ('' while a character is unfinished)."""
        self.held.append(token_id)
        piece = self.stream.step(self.backend, token_id)
        if piece is None:
            return ""
        self.released, self.held = self.held, []
        return piece

    def flush(self) -> str:
        """The text of the tokens still held back, an unfinished character as U+FFFD (as a full decode shows it)."""
        if not self.held:
            return ""
        before, after = (self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                         for ids in (self.released, self.released + self.held))
        self.released, self.held = self.released + self.held, []
        return after[len(before):]
