"""Loading labelled files: label handling, column guessing, carved validation, and each data error's code."""

from __future__ import annotations

import pytest

from textsvc.cli import main
from textsvc.config.training import DataConfig
from textsvc.errors import DataError
from textsvc.training.data import load_labelled_splits

from conftest import sentiment_rows, write_rows

ROWS = [{"text": "a fine film", "label": "pos"}, {"text": "a dull film", "label": "neg"},
        {"text": "so good", "label": "pos"}, {"text": "so bad", "label": "neg"}]


def load(train_file, **settings):
    return load_labelled_splits(DataConfig(train_file=str(train_file), **settings))


def data_error(**settings) -> DataError:
    with pytest.raises(DataError) as error:
        load(**settings)
    return error.value


def test_string_labels_are_sorted_names(tmp_path):
    splits = load(write_rows(tmp_path / "train.csv", ROWS), validation_file=str(write_rows(tmp_path / "dev.csv", ROWS)))
    assert splits.label_names == ("neg", "pos")
    assert splits.splits["train"]["label"] == [1, 0, 1, 0]
    assert splits.splits["train"].features["label"].names == ["neg", "pos"]
    assert splits.files == {"train": "train.csv", "validation": "dev.csv"}


def test_integer_labels_without_names(tmp_path):
    rows = [{"text": row["text"], "label": int(row["label"] == "pos")} for row in ROWS]
    splits = load(write_rows(tmp_path / "train.jsonl", rows), validation_file=str(write_rows(tmp_path / "dev.jsonl", rows)))
    assert splits.label_names == ("0", "1")
    assert splits.splits["validation"]["label"] == [1, 0, 1, 0]


def test_integer_labels_with_label_names(tmp_path):
    rows = [{"text": row["text"], "label": int(row["label"] == "pos")} for row in ROWS]
    train = write_rows(tmp_path / "train.csv", rows)
    splits = load(train, validation_file=str(train), label_names=("neg", "pos"))
    assert splits.label_names == ("neg", "pos")
    assert splits.splits["train"]["label"] == [1, 0, 1, 0]
    assert data_error(train_file=train, label_names=("only",)).code == "label_names_mismatch"


def test_default_columns_sentence_and_label(tmp_path):
    rows = [{"idx": i, "sentence": row["text"], "label": row["label"]} for i, row in enumerate(ROWS)]
    train = write_rows(tmp_path / "train.tsv", rows)
    splits = load(train, validation_file=str(train))
    assert splits.splits["train"]["text"] == [row["text"] for row in ROWS]
    assert splits.splits["train"].column_names == ["text", "label"]


def test_tsv_keeps_bare_quotes(tmp_path):
    rows = [{"sentence": 'he said "great', "label": "pos"}, {"sentence": '"quoted" start, and a comma', "label": "neg"},
            {"sentence": 'a lone " mid-text', "label": "pos"}]
    train = write_rows(tmp_path / "train.tsv", rows)
    splits = load(train, validation_file=str(train))
    assert splits.splits["train"]["text"] == [row["sentence"] for row in rows]


def test_validation_is_carved_seeded_and_stratified(tmp_path):
    rows = sentiment_rows(60, seed=5)
    train = write_rows(tmp_path / "train.csv", rows)
    first, second = load(train, validation_split_percentage=20), load(train, validation_split_percentage=20)
    train_split, validation = first.splits["train"], first.splits["validation"]
    assert (len(train_split), len(validation)) == (48, 12)
    assert sorted(validation["label"]) == [0] * 6 + [1] * 6
    assert validation["text"] == second.splits["validation"]["text"]
    assert sorted([*train_split["text"], *validation["text"]]) == sorted(row["text"] for row in rows)


def test_max_train_samples(tmp_path):
    splits = load(write_rows(tmp_path / "train.csv", sentiment_rows(40, seed=6)), max_train_samples=20)
    assert len(splits.splits["train"]) + len(splits.splits["validation"]) == 20


def test_missing_file(tmp_path):
    assert data_error(train_file=tmp_path / "nope.csv").code == "file_not_found"


def test_broken_json_lines(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "fine", "label": "pos"}\n{"text": "broken", "label": \n', encoding="utf-8")
    assert data_error(train_file=train).code == "unreadable_file"


def test_unknown_column(tmp_path):
    assert data_error(train_file=write_rows(tmp_path / "train.csv", ROWS), text_column="nope").code == "unknown_column"


@pytest.mark.parametrize("name, content", [("dev.csv", "text,label\n"), ("dev.tsv", "text\tlabel\n"),
                                           ("dev.jsonl", "\n")])
def test_header_only_or_empty_validation_file(tmp_path, name, content):
    validation = tmp_path / name
    validation.write_text(content, encoding="utf-8")
    error = data_error(train_file=write_rows(tmp_path / "train.csv", ROWS), validation_file=str(validation))
    assert error.code == "empty_split"


@pytest.mark.parametrize("split", ["validation_file", "test_file"])
def test_label_never_seen_in_training(tmp_path, split):
    other = write_rows(tmp_path / "other.csv", [*ROWS, {"text": "meh", "label": "neutral"}])
    error = data_error(train_file=write_rows(tmp_path / "train.csv", ROWS), **{split: str(other)})
    assert error.code == "unseen_label"


@pytest.mark.parametrize("texts", [[5, 7, 9, 11], ["fine", None, "good", "bad"], ["fine", 3, "good", "bad"]])
def test_non_text_values(tmp_path, texts):
    rows = [{"text": text, "label": row["label"]} for text, row in zip(texts, ROWS)]
    assert data_error(train_file=write_rows(tmp_path / "train.jsonl", rows)).code == "non_text_value"


def test_unsupported_file_type(tmp_path):
    train = tmp_path / "train.xlsx"
    train.write_bytes(b"PK\x03\x04")
    assert data_error(train_file=train).code == "unsupported_file_type"


def test_ambiguous_columns(tmp_path):
    rows = [{"a": row["text"], "b": row["label"], "c": "x"} for row in ROWS]
    assert data_error(train_file=write_rows(tmp_path / "train.csv", rows)).code == "ambiguous_column"


def test_missing_label_in_train(tmp_path):
    rows = [*ROWS, {"text": "no label", "label": None}]
    assert data_error(train_file=write_rows(tmp_path / "train.jsonl", rows)).code == "missing_label"


@pytest.mark.parametrize("make_args, code", [
    (lambda d: ["--train_file", str(d / "nope.csv")], "file_not_found"),
    (lambda d: ["--train_file", str(write_rows(d / "t.csv", ROWS)), "--text_column", "nope"], "unknown_column"),
    (lambda d: ["--train_file", str(write_rows(d / "t.parquet.bak", ROWS))], "unsupported_file_type"),
    (lambda d: ["--train_file", str(write_rows(d / "t.csv", ROWS)), "--arch", "cnn"], "invalid_config"),
])
def test_cli_prints_one_line_error(tmp_path, capsys, make_args, code):
    status = main(["train-classifier", "--output_dir", str(tmp_path / "out"), *make_args(tmp_path)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(f"textsvc: error [{code}]: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()
