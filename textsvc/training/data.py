"""Load labelled text through `datasets.load_dataset`, map columns, and make the splits training needs."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict

from textsvc.config.training import DataConfig
from textsvc.errors import DataError, ErrorCode

TEXT_COLUMN_GUESSES = ("text", "sentence", "content", "review", "document", "description")
LABEL_COLUMN_GUESSES = ("label", "labels", "label_name", "category", "class", "target")
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


@dataclass(frozen=True)
class LabelledSplits:
    """Splits with a `text` (str) and a `label` (int id) column, plus the label names in id order."""

    splits: DatasetDict
    label_names: tuple[str, ...]
    source: str  # a hub name, or the folder holding the files, for the model card
    files: dict[str, str]  # split -> file name, for local files


def file_builder(path: str) -> tuple[str, dict]:
    """The `datasets` builder name and reader options for a local file, from its extension."""
    suffixes = [s for s in Path(path).suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    suffix = suffixes[-1].lower() if suffixes else ""
    if suffix not in _BUILDERS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use csv, tsv, json, jsonl, "
                        "parquet or txt", code=ErrorCode.UNSUPPORTED_FILE_TYPE)
    if suffix == ".tsv":  # TSV has no quoting convention: a bare " is text (GLUE's SST-2 relies on this)
        return "csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return _BUILDERS[suffix], {}


def load_raw_splits(config: DataConfig) -> DatasetDict:
    """Every split the configuration names, as loaded, before any column handling."""
    if config.dataset_name:
        try:
            return datasets.load_dataset(config.dataset_name, config.dataset_config_name)
        except Exception as error:  # the hub raises many types; the user needs one line
            raise DataError(f"cannot load data set {config.dataset_name!r}: {error}",
                            code=ErrorCode.DATASET_UNAVAILABLE) from error
    files = {"train": config.train_file, "validation": config.validation_file, "test": config.test_file}
    splits = {}
    for split, path in files.items():
        if path:
            splits[split] = load_file(path)
    return DatasetDict(splits)


def load_file(path: str) -> Dataset:
    """One local file as a `Dataset`, with one-line errors for missing or unparsable files."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file", code=ErrorCode.FILE_NOT_FOUND)
    builder, options = file_builder(path)
    try:
        return datasets.load_dataset(builder, data_files=path, split="train", **options)
    except Exception as error:  # pyarrow, pandas and json raise many types for malformed files
        if holds_no_rows(path):  # `datasets` cannot build a split of zero rows and raises instead
            raise DataError(f"{path}: holds no examples", code=ErrorCode.EMPTY_SPLIT) from error
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: cannot read as {builder}: {reason}", code=ErrorCode.UNREADABLE_FILE) from error


def holds_no_rows(path: str) -> bool:
    """True for an uncompressed text file with nothing but blank lines after a csv/tsv header line."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl", ".txt"):
        return False
    allowed = 1 if suffix in (".csv", ".tsv") else 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        filled = (line for line in handle if line.strip())
        return sum(1 for _ in itertools.islice(filled, allowed + 1)) <= allowed


def load_texts(path: str, text_column: str | None = None) -> list[str]:
    """The texts of an unlabelled file (one per line for .txt), refusing non-text values and empty files."""
    dataset = load_file(path)
    column = text_column or guess_column(list(dataset.column_names), TEXT_COLUMN_GUESSES, "text")
    texts = [text for text in dataset[column] if not (isinstance(text, str) and not text.strip())]
    if not texts:
        raise DataError(f"{path} holds no texts", code=ErrorCode.EMPTY_SPLIT)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{path}, row {row + 1}: {text!r} is not text", code=ErrorCode.NON_TEXT_VALUE)
    return texts


def guess_column(columns: list[str], guesses: tuple[str, ...], kind: str, exclude: str | None = None) -> str:
    """Pick the column named like a usual `kind` column, or the only remaining one."""
    candidates = [c for c in columns if c != exclude]
    for guess in guesses:
        for column in candidates:
            if column.lower() == guess:
                return column
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"cannot tell which column holds the {kind} among {columns}; pass --{kind}_column",
                    code=ErrorCode.AMBIGUOUS_COLUMN)


def load_labelled_splits(config: DataConfig, need_train: bool = True) -> LabelledSplits:
    """Load, check and encode the splits: `train`, `validation` (carved from train if absent), `test`."""
    raw = load_raw_splits(config)
    if need_train and "train" not in raw:
        raise DataError("the data set has no train split", code=ErrorCode.EMPTY_SPLIT)
    first = raw["train"] if "train" in raw else next(iter(raw.values()))
    columns = list(first.column_names)
    text_column = config.text_column or guess_column(columns, TEXT_COLUMN_GUESSES, "text")
    label_column = config.label_column or guess_column(columns, LABEL_COLUMN_GUESSES, "label", exclude=text_column)
    for name, split in raw.items():
        for column in (text_column, label_column):
            if column not in split.column_names:
                raise DataError(f"{name} split has no column {column!r}; columns are {split.column_names}",
                                code=ErrorCode.UNKNOWN_COLUMN)
        if len(split) == 0:
            raise DataError(f"the {name} split is empty", code=ErrorCode.EMPTY_SPLIT)
    label_names = infer_label_names(first, label_column, config.label_names)
    values_are_ids = isinstance(first.features[label_column], ClassLabel) or bool(config.label_names)
    encoded = DatasetDict({name: encode_split(split, name, text_column, label_column, label_names, values_are_ids)
                           for name, split in raw.items()})
    if config.max_train_samples and "train" in encoded:
        encoded["train"] = encoded["train"].select(range(min(config.max_train_samples, len(encoded["train"]))))
    if need_train and "validation" not in encoded:
        encoded = carve_validation(encoded, config.validation_split_percentage)
    paths = {"train": config.train_file, "validation": config.validation_file, "test": config.test_file}
    files = {split: Path(path).name for split, path in paths.items() if path}
    source = config.dataset_name or Path(config.train_file).resolve().parent.name
    return LabelledSplits(encoded, label_names, source, files)


def infer_label_names(train: Dataset, label_column: str, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """Label names in id order: a `ClassLabel`'s names, the given names, or the sorted values seen in train."""
    feature = train.features[label_column]
    if isinstance(feature, ClassLabel):
        return tuple(feature.names)
    values = train.unique(label_column)
    if any(v is None for v in values):
        raise DataError(f"the train split has an empty value in label column {label_column!r}",
                        code=ErrorCode.MISSING_LABEL)
    if given:
        if not all(isinstance(v, int) and 0 <= v < len(given) for v in values):
            raise DataError(f"--label_names gives {len(given)} names but labels are {sorted(values)[:10]}",
                            code=ErrorCode.LABEL_NAMES_MISMATCH)
        return tuple(given)
    try:
        return tuple(str(v) for v in sorted(values))
    except TypeError:  # mixed numbers and strings
        return tuple(sorted(str(v) for v in values))


def encode_split(split: Dataset, name: str, text_column: str, label_column: str,
                 label_names: tuple[str, ...], values_are_ids: bool) -> Dataset:
    """Keep `text` and `label` (as an id); refuse non-text values and labels never seen in training."""
    label_id = label_encoder(values_are_ids, label_names)
    texts, ids = [], []
    for row, (text, label) in enumerate(zip(split[text_column], split[label_column])):
        if not isinstance(text, str):
            raise DataError(f"{name} split, row {row + 1}: column {text_column!r} holds {type(text).__name__} "
                            f"{text!r}, not text", code=ErrorCode.NON_TEXT_VALUE)
        encoded = label_id(label)
        if encoded is None:
            raise DataError(f"{name} split, row {row + 1}: label {label!r} was never seen in the training "
                            f"data (known labels: {list(label_names)[:20]})", code=ErrorCode.UNSEEN_LABEL)
        texts.append(text)
        ids.append(encoded)
    features = datasets.Features({"text": datasets.Value("string"), "label": ClassLabel(names=list(label_names))})
    return Dataset.from_dict({"text": texts, "label": ids}, features=features)


def label_encoder(values_are_ids: bool, label_names: tuple[str, ...]):
    """A function from a raw label value to its id, or None for a label outside `label_names`.

    Integer values are ids already for a `ClassLabel` column or when names were given for 0..n-1;
    otherwise every value, number or string, is looked up by its text."""
    ids = {label: i for i, label in enumerate(label_names)}

    def encode(value) -> int | None:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, int) and values_are_ids:
            return value if 0 <= value < len(label_names) else None
        return ids.get(str(value))

    return encode


def carve_validation(splits: DatasetDict, percentage: float, seed: int = 42) -> DatasetDict:
    """Hold out a seeded, label-stratified share of train as validation."""
    train = splits["train"]
    test_size = max(1, round(len(train) * percentage / 100))
    if len(train) - test_size < 1:
        raise DataError("the train split is too small to carve a validation split from", code=ErrorCode.EMPTY_SPLIT)
    try:
        parts = train.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    except ValueError:  # a class with a single example cannot be stratified; fall back to a plain split
        parts = train.train_test_split(test_size=test_size, seed=seed)
    carved = DatasetDict(splits)
    carved["train"], carved["validation"] = parts["train"], parts["test"]
    return carved
