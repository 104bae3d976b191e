"""Tokenizers learnt from the training texts: the same texts give the same vocabulary, run after run."""

from __future__ import annotations

import json

import pytest

from textsvc.tokenization import CLS, MASK, PAD, SEP, UNK, train_byte_bpe_tokenizer, train_wordpiece_tokenizer

from conftest import corpus_lines, sentiment_rows

TEXTS = [row["text"] for row in sentiment_rows(400, seed=0)] + corpus_lines(200, seed=1)


@pytest.mark.parametrize("train", [lambda: train_wordpiece_tokenizer(TEXTS, 300, 32, with_cls_sep=False),
                                   lambda: train_byte_bpe_tokenizer(TEXTS, 400, 32)], ids=["wordpiece", "byte-bpe"])
def test_the_same_texts_learn_the_same_vocabulary(train):
    # tokenizers' WordPiece trainer numbered its "##" pieces in hash-map order: five runs gave five vocabularies
    vocabularies = {json.dumps(train().get_vocab(), sort_keys=True) for _ in range(5)}
    assert len(vocabularies) == 1


def test_wordpiece_pieces_are_vocabulary_not_special_tokens():
    tokenizer = train_wordpiece_tokenizer(TEXTS, 300, 32, with_cls_sep=True)
    assert sorted(tokenizer.all_special_tokens) == sorted([PAD, UNK, CLS, SEP, MASK])
    assert [token for token in tokenizer.get_vocab() if token.startswith("##")]  # the pieces are learnt
    ids = tokenizer("wonderfully ##e")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert "##e" not in tokens  # a piece written in the text is read as text, not matched whole
    assert tokenizer.decode(ids, skip_special_tokens=True).startswith("wonderfully")
