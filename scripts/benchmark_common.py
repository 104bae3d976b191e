"""What the classifier benchmarks share: the TF-IDF + logistic regression baseline, one textsvc run from a recipe
(distilled from a teacher run when the recipe has a distillation_alpha), the transfer sentences, the results table,
the summary file and the copied cards. Imported by the `benchmark_*.py` scripts beside it."""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from pathlib import Path

from textsvc.cards import publish_card
from textsvc.config.serving import textsvc_home
from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig
from textsvc.default_models import GENERATOR_NAME
from textsvc.devices import device_description, pick_device
from textsvc.modeldir import read_json
from textsvc.pretrained import default_encoder_path
from textsvc.training.classifier import train_classifier

# names a recipe's embedding_init gives the installed copies, found when the run starts: MiniLM from its package,
# SmolLM2 as `textsvc serve` (or `textsvc prepare-defaults`) imported it into textsvc's cache
MINILM = "all-MiniLM-L6-v2"
SMOLLM2 = "SmolLM2-135M-Instruct"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_rows(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows),
                    encoding="utf-8")
    return path


def carve_sentence_validation(train_tsv: Path, folder: Path, size: int, min_words: int, seed: int = 0,
                              drop_sub_phrases: bool = False) -> tuple:
    """Training rows of >= `min_words` words, `size` of them drawn (seeded) as validation; the rest train, less
    (with `drop_sub_phrases`) every row that is a run of words inside a validation sentence."""
    rows = read_rows(train_tsv)
    long_rows = [i for i, row in enumerate(rows) if len(row["sentence"].split()) >= min_words]
    chosen = set(random.Random(seed).sample(long_rows, min(size, len(long_rows))))
    validation = [row for i, row in enumerate(rows) if i in chosen]
    # SST-2's train holds every phrase of each sentence's parse tree: kept, they show the validation sentences'
    # words and labels to the model in pieces (most validation sentences are >= 80% covered by one training phrase)
    leaked = word_spans(row["sentence"] for row in validation) if drop_sub_phrases else set()
    train = [row for i, row in enumerate(rows) if i not in chosen and " ".join(row["sentence"].split()) not in leaked]
    return write_rows(train, folder / "train.tsv"), write_rows(validation, folder / "validation.tsv")


def word_spans(texts) -> set[str]:
    """Every run of consecutive words of every text, words joined by one space."""
    spans = set()
    for text in texts:
        words = text.split()
        spans.update(" ".join(words[start:end]) for start in range(len(words))
                     for end in range(start + 1, len(words) + 1))
    return spans


def write_transfer_sentences(documents: list[str], target: Path, count: int, seed: int = 0) -> Path:
    """`count` sentences of 4-50 words drawn (seeded) from unlabelled `documents`: a distillation transfer set."""
    sentences = [s.strip() for document in documents for s in re.split(r"(?<=[.!?])\s+", document)]
    sentences = [s for s in sentences if 4 <= len(s.split()) <= 50]
    random.Random(seed).shuffle(sentences)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(sentences[:count]) + "\n", encoding="utf-8")
    return target


def is_taught(spec: dict) -> bool:
    """Whether a recipe learns from a teacher's logits (and so needs the teacher run first)."""
    return "distillation_alpha" in spec.get("train", {})


def teacher_first(names: list[str], runs: dict) -> list[str]:
    """`names` in an order that trains every teacher before the runs it teaches."""
    return sorted(names, key=lambda name: is_taught(runs[name]))


def teacher_settings(spec: dict, teacher_dirs: list[str], transfer_file: Path | None) -> dict:
    """The training settings a taught recipe adds: its teachers and the transfer texts they label; none otherwise."""
    if not is_taught(spec):
        return {}
    transfer = {"transfer_file": str(transfer_file)} if transfer_file else {}
    return {"teacher_model_dir": tuple(teacher_dirs), **transfer}


def add_run_flags(parser: argparse.ArgumentParser, runs: dict, output_dir: str, default_runs: list[str]) -> None:
    """The flags every data set's benchmark takes: where runs go, which run, recipe overrides, cards, baseline."""
    parser.add_argument("--output_dir", default=output_dir)
    parser.add_argument("--runs", nargs="*", choices=sorted(runs), default=default_runs,
                        help="the runs to train (none: the baseline only)")
    parser.add_argument("--overrides", default="{}",
                        help='JSON: {"lstm": {"model": {...}, "train": {...}, "data": {...}}}')
    parser.add_argument("--copy_cards", help="copy each model card to this folder")
    parser.add_argument("--no_baseline", action="store_true")
    parser.add_argument("--disable_tqdm", action="store_true")
    parser.add_argument("--teacher_dirs", nargs="+", help="teachers of the distilled runs (default: the teacher run "
                                                          "in --output_dir)")


def tfidf_baseline(train_texts: list[str], train_labels: list, test_texts: list[str], test_labels: list,
                   c: float = 4.0) -> dict:
    """TF-IDF (1-2 grams, sublinear tf) + logistic regression: the classical anchor, trained and tested in-process."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    started = time.time()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    classifier = LogisticRegression(C=c, max_iter=2000).fit(vectorizer.fit_transform(train_texts), train_labels)
    predictions = classifier.predict(vectorizer.transform(test_texts))
    return {"test_accuracy": accuracy_score(test_labels, predictions),
            "test_macro_f1": f1_score(test_labels, predictions, average="macro"), "wall_seconds": time.time() - started}


def run_recipe(spec: dict, overrides: dict, output_dir: Path, data: dict, train: dict) -> dict:
    """Train one textsvc classifier from a recipe (`{"model": ..., "train": ..., "data": ...}`, then `overrides`
    of the same shape) and read its test figures back from the model directory."""
    data_config = DataConfig(**{**data, **spec.get("data", {}), **overrides.get("data", {})})
    model_values = {**spec.get("model", {}), **overrides.get("model", {})}
    if model_values.get("embedding_init") == MINILM:
        model_values["embedding_init"] = default_encoder_path()
    if model_values.get("embedding_init") == SMOLLM2:
        model_values["embedding_init"] = str(textsvc_home() / "models" / GENERATOR_NAME)
    model = ClassifierModelConfig(**model_values)
    train_config = TrainingConfig(output_dir=str(output_dir), **{**train, **spec.get("train", {}),
                                                                 **overrides.get("train", {})})
    started = time.time()
    train_classifier(data_config, model, train_config)
    report = read_json(output_dir / "test_results.json")
    info = read_json(output_dir / "training_info.json")
    refit = info.get("refit") or {}  # a refit model: the selection run's model was tested too, in the same run
    return {"test_accuracy": report["accuracy"], "test_macro_f1": report["macro_f1"],
            "validation_accuracy": read_json(output_dir / "eval_results.json")["accuracy"],
            "wall_seconds": time.time() - started, "epochs": info["hyperparameters"]["epochs_completed"],
            **({"refit_epochs": refit["epochs"]} if refit else {}),
            **({"selection_run_test_accuracy": refit["selection_run_test"]["accuracy"]}
               if "selection_run_test" in refit else {}),
            "parameters": info["num_parameters"], "output_dir": str(output_dir)}


def copy_card(result: dict, folder: str | None, name: str) -> None:
    """Copy a run's model card to `folder/name.md` (the repository's model_cards/, say), with its pictures."""
    if folder:
        publish_card(result["output_dir"], folder, name)


def report(title: str, results: dict, output_root: Path, accuracy_name: str = "test acc") -> None:
    """Print the results table and merge the results into `output_root/summary.json` (earlier runs stay listed)."""
    print(f"\n{title} on {device_description(pick_device())}")
    # "before refit": the same run's model chosen on validation, tested before the refit replaced it
    print(f"{'model':<26}{accuracy_name:>9}{'macro F1':>10}{'val acc':>9}{'epochs':>8}{'before refit':>14}"
          f"{'wall s':>9}")
    for name, r in results.items():
        print(f"{name:<26}{r['test_accuracy']:>9.4f}{r.get('test_macro_f1', float('nan')):>10.4f}"
              f"{r.get('validation_accuracy', float('nan')):>9.4f}{r.get('epochs', float('nan')):>8}"
              f"{r.get('selection_run_test_accuracy', float('nan')):>14.4f}{r['wall_seconds']:>9.1f}")
    output_root.mkdir(parents=True, exist_ok=True)
    summary = output_root / "summary.json"
    earlier = json.loads(summary.read_text()) if summary.is_file() else {}
    summary.write_text(json.dumps({**earlier, **results}, indent=2) + "\n")
