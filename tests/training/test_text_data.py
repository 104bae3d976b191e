"""Text for generators: files and columns load as documents, validation is the end of the text, blocks pack."""

from __future__ import annotations

import pytest

from textsvc.config.training import TextDataConfig
from textsvc.errors import DataError
from textsvc.tokenization import train_byte_bpe_tokenizer, train_char_tokenizer
from textsvc.training.text_data import (
    IGNORE_INDEX,
    evaluation_blocks,
    load_text_splits,
    pack_blocks,
    token_stream,
    tokenize_documents,
)

from conftest import corpus_lines, write_rows


def test_single_text_file_keeps_newlines_and_holds_out_its_last_tenth(corpus_file):
    text = corpus_file.read_text(encoding="utf-8")
    splits = load_text_splits(TextDataConfig(train_file=str(corpus_file)))
    (train,), (validation,) = splits.splits["train"]["text"], splits.splits["validation"]["text"]
    cut = int(len(text) * 0.9)  # nanoGPT's split of tiny-shakespeare
    assert (train, validation) == (text[:cut], text[cut:])
    assert "characters" in splits.validation_carved and splits.files == {"train": "corpus.txt"}


def test_rows_of_a_text_column_hold_out_the_last_rows(tmp_path):
    rows = [{"id": i, "body": line} for i, line in enumerate(corpus_lines(50, seed=1))]
    path = write_rows(tmp_path / "docs.jsonl", rows)
    splits = load_text_splits(TextDataConfig(train_file=str(path), text_column="body",
                                             validation_split_percentage=20.0))
    assert splits.splits["train"]["text"] == [row["body"] for row in rows[:40]]
    assert splits.splits["validation"]["text"] == [row["body"] for row in rows[40:]]


def test_given_validation_file_and_guessed_text_column(tmp_path):
    train = write_rows(tmp_path / "train.csv", [{"text": line, "n": 1} for line in corpus_lines(10, 2)])
    validation = write_rows(tmp_path / "dev.csv", [{"text": line, "n": 1} for line in corpus_lines(3, 3)])
    splits = load_text_splits(TextDataConfig(train_file=str(train), validation_file=str(validation)))
    assert len(splits.splits["train"]) == 10 and len(splits.splits["validation"]) == 3
    assert splits.validation_carved is None


def test_dataset_name_loads_named_splits(tmp_path):
    """`--dataset_name` goes through `datasets.load_dataset`; a local folder stands in for the hub here."""
    write_rows(tmp_path / "data" / "train.jsonl", [{"text": line} for line in corpus_lines(8, 4)])
    write_rows(tmp_path / "data" / "validation.jsonl", [{"text": line} for line in corpus_lines(2, 5)])
    splits = load_text_splits(TextDataConfig(dataset_name=str(tmp_path / "data")))
    assert splits.splits["validation"]["text"] == corpus_lines(2, 5) and splits.validation_carved is None
    assert len(splits.splits["train"]) == 8 and splits.source == str(tmp_path / "data")


@pytest.mark.parametrize("name, content, settings, code", [
    ("missing.txt", None, {}, "file_not_found"),
    ("empty.jsonl", "", {}, "empty_split"),
    ("docs.jsonl", '{"body": "a"}\n{"body": "b"}\n', {"text_column": "text"}, "unknown_column"),
    ("docs.jsonl", '{"text": 3}\n{"text": 4}\n', {}, "non_text_value"),
    ("one.txt", "x", {}, "empty_split"),  # too short to carve a validation share from
])
def test_data_errors(tmp_path, name, content, settings, code):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_text_splits(TextDataConfig(train_file=str(path), **settings))
    assert error.value.code == code


def test_blocks_pack_the_token_stream_and_evaluation_predicts_every_token_once(corpus_file):
    tokenizer = train_byte_bpe_tokenizer([corpus_file.read_text(encoding="utf-8")], 300, 32)
    splits = load_text_splits(TextDataConfig(train_file=str(corpus_file)))
    tokenized = tokenize_documents(splits.splits["validation"], tokenizer)
    ids = token_stream(tokenized)
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids[:-1]) == splits.splits["validation"][0]["text"]
    packed = pack_blocks(tokenized, 16)
    assert all(len(block) == 16 for block in packed["input_ids"]) and packed["labels"] == packed["input_ids"]
    assert sum(packed["input_ids"], []) == ids[:len(ids) // 16 * 16]
    blocks = evaluation_blocks(ids, 16, tokenizer.pad_token_id)
    predicted = [label for row in blocks["labels"] for label in row[1:] if label != IGNORE_INDEX]
    assert predicted == ids[1:]
    with pytest.raises(DataError) as error:
        pack_blocks(tokenized, len(ids) + 1)
    assert error.value.code == "text_too_short"


def test_tokenizers_round_trip_text_exactly():
    text = "Hello wörld!\n\nFirst Citizen:\n  Before we proceed, 日本語 🎉"
    bpe = train_byte_bpe_tokenizer([text] * 3, 300, 64)
    char = train_char_tokenizer([text], 64)
    for tokenizer in (bpe, char):
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
        assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert len(char(text)["input_ids"]) == len(text)
    assert char.decode(char("zq")["input_ids"]) == "z<|unk|>"  # unseen characters are unknown, not dropped
    assert bpe.decode(bpe("zq ✓")["input_ids"]) == "zq ✓"  # byte-level: nothing is unknown
