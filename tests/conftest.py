"""Shared fixtures: tiny data files written on the fly and tiny real models, each trained once per session."""

from __future__ import annotations

import atexit
import csv
import json
import logging
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

# Keep the `datasets` cache out of the user's home, and never reach the hub. Set before `datasets` is imported.
_HF_HOME = tempfile.mkdtemp(prefix="textsvc-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, True)
os.environ.update(HF_HOME=_HF_HOME, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                  HF_DATASETS_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  OMP_NUM_THREADS="1",  # tiny models run faster on one thread, and far faster beside a busy process
                  # served models in float32, so that served figures equal direct ones; test_dtype.py covers the rest
                  TEXTSVC_DTYPE="float32",
                  TEXTSVC_HOME=_HF_HOME)  # the ONNX exports of served classifiers, made once per session

from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig  # noqa: E402

POSITIVE = "good great excellent wonderful amazing lovely fantastic superb delightful brilliant".split()
NEGATIVE = "bad awful terrible horrible poor dreadful boring ugly nasty worst".split()
FILLER = "the movie film plot acting was really quite so very a story show".split()

LSTM = {"arch": "lstm", "embedding_init": "scratch", "vocab_size": 200, "embedding_dim": 16, "hidden_size": 16,
        "num_layers": 1, "max_seq_length": 32}
TRANSFORMER = {"arch": "transformer", "model_name_or_path": "scratch", "vocab_size": 200, "hidden_size": 32,
               "num_layers": 2, "num_attention_heads": 2, "max_seq_length": 32}
# tiny runs pin refit off (the LSTM's default is on) so that each model is the one its validation figures measure;
# tests/training/test_refit.py covers it
TRAINING = {"num_train_epochs": 10.0, "learning_rate": 1e-2, "per_device_train_batch_size": 16,
            "early_stopping_patience": 0, "logging_steps": 1000, "disable_tqdm": True, "refit": False}
ARCH_SETTINGS = {"lstm": LSTM, "transformer": {**TRANSFORMER, "learning_rate": 2e-3, "num_train_epochs": 5.0}}


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """`n` short sentences, alternately positive and negative, each with two unmistakable sentiment words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(2, 5)) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write `rows` as csv, tsv (tabs, no quoting) or jsonl, chosen by the extension; returns `path`."""
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({c: row[c] for c in columns}) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".tsv":
        lines = ["\t".join(columns)] + ["\t".join(str(row[c]) for c in columns) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(client, name: str, **labels) -> float:
    """One sample's value from a test client's /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def write_broken_models(root: Path, classifier_dir: Path, generator_dir: Path) -> Path:
    """A models folder of two good models and one, `corrupt`, whose model.safetensors is 4 KB of random bytes."""
    shutil.copytree(classifier_dir, root / "sentiment-lstm")
    shutil.copytree(generator_dir, root / "tiny-lstm-lm")
    shutil.copytree(classifier_dir, root / "corrupt")
    (root / "corrupt" / "model.safetensors").write_bytes(os.urandom(4096))
    return root


def as_flags(settings: dict) -> list[str]:
    """The command-line flags that mean the same as `settings`."""
    flags = []
    for name, value in settings.items():
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", ",".join(value) if isinstance(value, tuple) else str(value)]
    return flags


def tiny_configs(arch: str, output_dir: Path, train_file: Path, **settings) -> tuple:
    """Data, model and training configs for a tiny run of `arch`; `settings` override any field."""
    from textsvc.config.common import build_configs

    values = {**TRAINING, **ARCH_SETTINGS[arch], "train_file": str(train_file), "output_dir": str(output_dir),
              **settings}
    return build_configs(values, DataConfig, ClassifierModelConfig, TrainingConfig)


def train_tiny(arch: str, output_dir: Path, train_file: Path, callbacks=(), **settings) -> Path:
    """Train a tiny `arch` model into `output_dir` (see `tiny_configs`)."""
    from textsvc.training.classifier import train_classifier

    return train_classifier(*tiny_configs(arch, output_dir, train_file, **settings), callbacks=callbacks)


class DeprecationLog(logging.Handler):
    """Keeps what transformers logs, rather than warns, about deprecated names (`past_key_values`, say)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "deprecated" in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_deprecated_transformers_calls():
    """Fail a test during which transformers logged a deprecation: the pyproject filters see only warnings."""
    handler = DeprecationLog()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    if handler.messages:
        pytest.fail("transformers logged a deprecation: " + " | ".join(handler.messages))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """train.csv (120 rows), dev.csv and test.csv (40 rows each), labels `neg` / `pos`."""
    directory = tmp_path_factory.mktemp("sentiment")
    for name, size, seed in (("train", 120, 0), ("dev", 40, 1), ("test", 40, 2)):
        write_rows(directory / f"{name}.csv", sentiment_rows(size, seed))
    return directory


def _train_session_model(tmp_path_factory, data_dir: Path, arch: str) -> Path:
    output_dir = tmp_path_factory.mktemp(f"{arch}-run") / f"tiny-{arch}"
    return train_tiny(arch, output_dir, data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                      test_file=str(data_dir / "test.csv"))


@pytest.fixture(scope="session")
def lstm_dir(tmp_path_factory, data_dir) -> Path:
    """A tiny LSTM trained on the sentiment files, with validation and test results."""
    return _train_session_model(tmp_path_factory, data_dir, "lstm")


@pytest.fixture(scope="session")
def transformer_dir(tmp_path_factory, data_dir) -> Path:
    """A tiny BERT-style encoder trained from scratch on the sentiment files."""
    return _train_session_model(tmp_path_factory, data_dir, "transformer")


@pytest.fixture(params=["lstm", "transformer"])
def model_dir(request) -> Path:
    """Each tiny trained model directory in turn."""
    return request.getfixturevalue(f"{request.param}_dir")


# --- text generators ------------------------------------------------------------------------------------------

SUBJECTS = ("the cat", "a dog", "the old man", "my friend", "the café owner", "a naïve bird")
VERBS = ("sat on", "looked at", "walked to", "sang about", "dreamt of")
OBJECTS = ("the mat", "a red box", "the garden", "the river", "日本の山", "the moon")  # multi-byte characters too

LM_ARCH_SETTINGS = {
    "lstm": {"arch": "lstm", "embedding_dim": 32, "hidden_size": 32, "num_layers": 2, "dropout": 0.0,
             "embedding_dropout": 0.0, "learning_rate": 1e-2},
    "transformer": {"arch": "transformer", "hidden_size": 32, "num_layers": 2, "num_attention_heads": 2,
                    "dropout": 0.0, "learning_rate": 3e-3},
}
LM_TRAINING = {"vocab_size": 300, "block_size": 32, "max_steps": 40, "per_device_train_batch_size": 16,
               "warmup_ratio": 0.0, "logging_steps": 5, "disable_tqdm": True, "sample_max_new_tokens": 20}


def corpus_lines(n: int, seed: int) -> list[str]:
    """`n` short sentences from a tiny grammar: easy to learn, with a few multi-byte characters."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(n)]


def lm_configs(arch: str, output_dir: Path, train_file: Path, **settings) -> tuple:
    """Data, model and training configs for a tiny generator run; `settings` override any field."""
    from textsvc.config.common import build_configs
    from textsvc.config.training import GeneratorModelConfig, GeneratorTrainingConfig, TextDataConfig

    values = {**LM_TRAINING, **LM_ARCH_SETTINGS[arch], "train_file": str(train_file), "output_dir": str(output_dir),
              **settings}
    return build_configs(values, TextDataConfig, GeneratorModelConfig, GeneratorTrainingConfig)


def train_tiny_generator(arch: str, output_dir: Path, train_file: Path, callbacks=(), **settings) -> Path:
    """Train a tiny `arch` generator into `output_dir` (see `lm_configs`)."""
    from textsvc.training.generator import train_generator

    return train_generator(*lm_configs(arch, output_dir, train_file, **settings), callbacks=callbacks)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """corpus.txt: 400 sentences, one per line (one document; validation is its last 10%)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(corpus_lines(400, seed=0)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def lstm_lm_dir(tmp_path_factory, corpus_file) -> Path:
    """A tiny LSTM language model with a byte-level BPE, trained 40 steps on `corpus_file`."""
    return train_tiny_generator("lstm", tmp_path_factory.mktemp("lstm-lm") / "tiny-lstm-lm", corpus_file)


@pytest.fixture(scope="session")
def gpt_lm_dir(tmp_path_factory, corpus_file) -> Path:
    """A tiny GPT-2-style decoder with a byte-level BPE, trained 40 steps on `corpus_file`."""
    return train_tiny_generator("transformer", tmp_path_factory.mktemp("gpt-lm") / "tiny-gpt-lm", corpus_file)


@pytest.fixture(params=["lstm", "transformer"])
def generator_dir(request) -> Path:
    """Each tiny trained generator directory in turn."""
    return request.getfixturevalue("lstm_lm_dir" if request.param == "lstm" else "gpt_lm_dir")


# --- serving --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, lstm_dir, transformer_dir, lstm_lm_dir, gpt_lm_dir) -> Path:
    """A serving folder: two classifiers and two generators (copies), and folders the server must skip."""
    root = tmp_path_factory.mktemp("served")
    for name, source in (("sentiment-lstm", lstm_dir), ("sentiment-bert", transformer_dir),
                         ("tiny-lstm-lm", lstm_lm_dir), ("tiny-gpt", gpt_lm_dir)):
        shutil.copytree(source, root / name)
    shutil.copytree(lstm_dir, root / ".hidden-model")
    shutil.copytree(lstm_dir, root / "sentiment-lstm.checkpoints")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a model\n")
    return root


# short, as the tiny GPT's context holds 32 tokens: "s: a\nu: the cat\na:"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'][0] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}a:{% endif %}")


@pytest.fixture(scope="session")
def chat_models_dir(tmp_path_factory, gpt_lm_dir, lstm_dir) -> Path:
    """A serving folder for the chat and compatibility routes: the tiny GPT twice, `tiny-chat` with a chat template
    of its own (chat_template.jinja, as transformers saves one) and `tiny-gpt` without, and a classifier."""
    root = tmp_path_factory.mktemp("chat-served")
    for name, source in (("tiny-chat", gpt_lm_dir), ("tiny-gpt", gpt_lm_dir), ("sentiment-lstm", lstm_dir)):
        shutil.copytree(source, root / name)
    (root / "tiny-chat" / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return root
