"""Streamed text: pieces never split a character, join to the full decode, and keep the prompt's context."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from textsvc.generation.streaming import TextDecoder
from textsvc.tokenization import train_byte_bpe_tokenizer


def test_text_decoder_never_splits_a_character():
    tokenizer = train_byte_bpe_tokenizer(["plain ascii text only"] * 5, 300, 64)  # CJK and emoji stay raw bytes
    text = "ok 日本の山 🎉 café"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) > len(text)
    decoder = TextDecoder(tokenizer, [])
    pieces = [decoder.add(token) for token in ids] + [decoder.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces)


def test_an_unfinished_character_is_released_at_the_end_as_a_full_decode_shows_it():
    tokenizer = train_byte_bpe_tokenizer(["plain ascii text only"] * 5, 300, 64)
    ids = tokenizer("ok 日本")["input_ids"]
    cut = ids[:-1]  # the last character lacks its last byte
    decoder = TextDecoder(tokenizer, [])
    pieces = [decoder.add(token) for token in cut]
    assert not any("\ufffd" in piece for piece in pieces)
    assert "".join(pieces) + decoder.flush() == tokenizer.decode(cut)
    assert decoder.flush() == ""


def test_a_piece_keeps_the_space_the_prompt_gives_it():
    vocab = {"<unk>": 0, "▁Hello": 1, "▁world": 2, "!": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert tokenizer.decode([2]) == "world"  # alone, SentencePiece-style decoding drops the leading space
    decoder = TextDecoder(tokenizer, [1])
    assert [decoder.add(token) for token in (2, 3)] == [" world", "!"]
