"""Text for language modelling: load it through `datasets`, carve the validation text, pack tokens into blocks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from textsvc.config.training import TextDataConfig
from textsvc.errors import DataError, ErrorCode
from textsvc.training.data import TEXT_COLUMN_GUESSES, file_builder, guess_column, load_file

IGNORE_INDEX = -100  # label of positions that carry no loss (the transformers convention)


@dataclass(frozen=True)
class TextSplits:
    """`train` and `validation` documents in a `text` column, with their origin for the model card."""

    splits: DatasetDict
    source: str  # a hub name, or the folder holding the files
    files: dict[str, str]  # split -> file name, for local files
    validation_carved: str | None  # how validation was taken from train, or None when it was given


def load_text_file(path: str, text_column: str | None = None) -> Dataset:
    """A `text` column of documents: a .txt file is one document (newlines kept), other files one per row."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file", code=ErrorCode.FILE_NOT_FOUND)
    builder, _ = file_builder(path)
    if builder == "text":
        # `sample_by="document"`: the whole file is one row; the line builder would drop every newline
        dataset = datasets.load_dataset("text", data_files=path, split="train", sample_by="document")
        column = "text"
    else:
        dataset = load_file(path)
        column = text_column or guess_column(list(dataset.column_names), TEXT_COLUMN_GUESSES, "text")
    return documents(dataset, column, path)


def documents(dataset: Dataset, column: str, name: str) -> Dataset:
    """Keep the non-empty texts of `column` as `text`; refuse missing columns and non-text values."""
    if column not in dataset.column_names:
        raise DataError(f"{name} has no column {column!r}; columns are {dataset.column_names}",
                        code=ErrorCode.UNKNOWN_COLUMN)
    texts = []
    for row, text in enumerate(dataset[column]):
        if text is not None and not isinstance(text, str):
            raise DataError(f"{name}, row {row + 1}: column {column!r} holds {type(text).__name__} {text!r}, "
                            "not text", code=ErrorCode.NON_TEXT_VALUE)
        if text:
            texts.append(text)
    if not texts:
        raise DataError(f"{name} holds no text", code=ErrorCode.EMPTY_SPLIT)
    return Dataset.from_dict({"text": texts})


def load_text_splits(config: TextDataConfig) -> TextSplits:
    """`train` and `validation` documents; without a validation split, the last share of the training text."""
    if config.dataset_name:
        try:
            raw = datasets.load_dataset(config.dataset_name, config.dataset_config_name)
        except Exception as error:  # the hub raises many types; the user needs one line
            raise DataError(f"cannot load data set {config.dataset_name!r}: {error}",
                            code=ErrorCode.DATASET_UNAVAILABLE) from error
        if "train" not in raw:
            raise DataError(f"{config.dataset_name} has no train split", code=ErrorCode.EMPTY_SPLIT)
        column = config.text_column or guess_column(list(raw["train"].column_names), TEXT_COLUMN_GUESSES, "text")
        splits = {name: documents(raw[name], column, f"{config.dataset_name} {name} split")
                  for name in ("train", "validation") if name in raw}
        source, files = config.dataset_name, {}
    else:
        paths = {"train": config.train_file, "validation": config.validation_file}
        splits = {name: load_text_file(path, config.text_column) for name, path in paths.items() if path}
        source = Path(config.train_file).resolve().parent.name
        files = {name: Path(path).name for name, path in paths.items() if path}
    carved = None
    if "validation" not in splits:
        splits["train"], splits["validation"], carved = carve_validation_text(
            splits["train"], config.validation_split_percentage)
    return TextSplits(DatasetDict(splits), source, files, carved)


def carve_validation_text(train: Dataset, percentage: float) -> tuple[Dataset, Dataset, str]:
    """The last `percentage` of a single document's characters (nanoGPT's tiny-shakespeare split), or of the rows."""
    if len(train) == 1:
        text = train[0]["text"]
        cut = int(len(text) * (1 - percentage / 100))
        if cut == 0 or cut == len(text):
            raise DataError("the training text is too short to carve a validation share from",
                            code=ErrorCode.EMPTY_SPLIT)
        how = f"the last {percentage:g}% of the training text's characters"
        return Dataset.from_dict({"text": [text[:cut]]}), Dataset.from_dict({"text": [text[cut:]]}), how
    size = max(1, round(len(train) * percentage / 100))
    if size >= len(train):
        raise DataError("the training data is too small to carve a validation split from", code=ErrorCode.EMPTY_SPLIT)
    how = f"the last {percentage:g}% of the training documents ({size} of {len(train)})"
    return train.select(range(len(train) - size)), train.select(range(len(train) - size, len(train))), how


def tokenize_documents(split: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """`input_ids` per document, each followed by the end-of-text token so the model learns where texts end."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def tokenize(batch):
        encoded = tokenizer(batch["text"], verbose=False)["input_ids"]  # long documents are packed, not truncated
        return {"input_ids": [ids + eos for ids in encoded], "num_chars": [len(text) for text in batch["text"]]}

    return split.map(tokenize, batched=True, remove_columns=split.column_names, desc="tokenizing")


def token_stream(tokenized: Dataset) -> list[int]:
    """All documents' token ids, one after the other."""
    return list(itertools.chain.from_iterable(tokenized["input_ids"]))


def pack_blocks(tokenized: Dataset, block_size: int) -> Dataset:
    """Concatenate documents and cut them into `block_size` examples, dropping the remainder (as `run_clm.py`)."""
    def group(batch):
        ids = list(itertools.chain.from_iterable(batch["input_ids"]))
        usable = len(ids) // block_size * block_size
        blocks = [ids[i:i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [list(block) for block in blocks]}

    packed = tokenized.map(group, batched=True, batch_size=10_000, remove_columns=tokenized.column_names,
                           desc=f"packing into blocks of {block_size}")
    if len(packed) == 0:
        raise DataError(f"the training text is shorter than one block of {block_size} tokens; lower --block_size",
                        code=ErrorCode.TEXT_TOO_SHORT)
    return packed


def evaluation_blocks(ids: list[int], block_size: int, pad_token_id: int) -> Dataset:
    """Windows overlapping by one token, so that every token after the first is predicted exactly once.

    The last window is padded on the right; padding has label -100 and attention mask 0.
    """
    step = block_size - 1
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for start in range(0, max(len(ids) - 1, 1), step):
        window = ids[start:start + block_size]
        padding = block_size - len(window)
        rows["input_ids"].append(window + [pad_token_id] * padding)
        rows["attention_mask"].append([1] * len(window) + [0] * padding)
        rows["labels"].append(window + [IGNORE_INDEX] * padding)
    return Dataset.from_dict(rows)
