"""SST-2 benchmark: train textsvc classifiers on GLUE SST-2 train, report dev accuracy beside a baseline.

The baseline (TF-IDF unigrams+bigrams with logistic regression, needs scikit-learn) runs in the same
process on the same machine, so the figures can be read side by side. Model selection uses a
validation share carved from train; dev.tsv is only ever used as the test set.

    python scripts/benchmark_sst2.py --data_dir ../shared/data/sst2 --runs lstm minilm lstm-distilled \
        --imdb_csv ../shared/data/imdb/train.csv.gz --copy_cards model_cards
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig
from textsvc.devices import device_description, pick_device
from textsvc.modeldir import read_json
from textsvc.training.classifier import train_classifier

RUNS = {
    "lstm": dict(model={"arch": "lstm", "embedding_dim": 300, "hidden_size": 256, "num_layers": 2,
                        "dropout": 0.4, "embedding_dropout": 0.3, "pooling": "max", "vocab_size": 16000,
                        "max_seq_length": 64},
                 train={"num_train_epochs": 8, "learning_rate": 2e-3, "per_device_train_batch_size": 64,
                        "weight_decay": 0.0, "early_stopping_patience": 3}),
    "minilm": dict(model={"arch": "transformer", "max_seq_length": 64},
                   train={"num_train_epochs": 2, "learning_rate": 5e-5, "per_device_train_batch_size": 32,
                          "early_stopping_patience": 2, "group_by_length": True},
                   data={"validation_split_percentage": 2}),
}
# runs that also learn from the fine-tuned MiniLM's logits (run "minilm" first, or in the same call): the LSTM,
# and MiniLM itself again (self-training: full IMDB sentences the teacher labelled are nearer to SST-2's dev
# sentences than the train split's short phrases)
RUNS["lstm-distilled"] = dict(model=RUNS["lstm"]["model"],
                              train={**RUNS["lstm"]["train"], "num_train_epochs": 4, "early_stopping_patience": 2,
                                     "distillation_alpha": 0.3, "distillation_temperature": 2.0})
RUNS["minilm-self-trained"] = dict(model=RUNS["minilm"]["model"], data=RUNS["minilm"]["data"],
                                   train={**RUNS["minilm"]["train"], "distillation_alpha": 0.5,
                                          "distillation_temperature": 2.0})
# a second round of self-training (Xie et al. 2020, "Noisy Student"): the same recipe, taught by --teacher_dirs,
# which are meant to be the first round's models (averaged when several), over more transfer sentences
RUNS["minilm-self-trained-2"] = RUNS["minilm-self-trained"]
TEACHER = "minilm"  # the default teacher of every run above that has a distillation_alpha
CARD_NAMES = {"lstm": "sst2-lstm", "minilm": "sst2-minilm-l6", "lstm-distilled": "sst2-lstm-distilled",
              "minilm-self-trained": "sst2-minilm-l6-self-trained",
              "minilm-self-trained-2": "sst2-minilm-l6-self-trained-2"}


def write_transfer_sentences(imdb_csv: Path, target: Path, count: int, seed: int = 0) -> Path:
    """Sentences from IMDB reviews (same domain as SST-2, no labels used) as a distillation transfer set."""
    import gzip
    import random
    import re

    opener = gzip.open if imdb_csv.suffix == ".gz" else open
    with opener(imdb_csv, "rt", encoding="utf-8", newline="") as handle:
        reviews = [row["text"] for row in csv.DictReader(handle)]
    sentences = [s.strip() for review in reviews for s in re.split(r"(?<=[.!?])\s+", review.replace("<br />", " "))]
    sentences = [s for s in sentences if 4 <= len(s.split()) <= 50]
    random.Random(seed).shuffle(sentences)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(sentences[:count]) + "\n", encoding="utf-8")
    return target


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def tfidf_baseline(data_dir: Path) -> dict:
    """TF-IDF (1-2 grams) + logistic regression: the classical anchor for this dev set."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.time()
    train_texts, train_labels = read_tsv(data_dir / "train.tsv")
    dev_texts, dev_labels = read_tsv(data_dir / "dev.tsv")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    classifier = LogisticRegression(C=4.0, max_iter=2000).fit(vectorizer.fit_transform(train_texts), train_labels)
    predictions = classifier.predict(vectorizer.transform(dev_texts))
    accuracy = sum(int(p == y) for p, y in zip(predictions, dev_labels)) / len(dev_labels)
    return {"dev_accuracy": accuracy, "wall_seconds": time.time() - started}


def run_textsvc(name: str, data_dir: Path, output_root: Path, overrides: dict, disable_tqdm: bool,
                transfer_file: Path | None = None, teacher_dirs: list[str] | None = None) -> dict:
    spec = RUNS[name]
    output_dir = output_root / CARD_NAMES[name]
    data = DataConfig(train_file=str(data_dir / "train.tsv"), test_file=str(data_dir / "dev.tsv"),
                      label_names=("negative", "positive"),
                      **{**spec.get("data", {}), **overrides.get("data", {})})
    model = ClassifierModelConfig(**{**spec["model"], **overrides.get("model", {})})
    extra = {}
    if "distillation_alpha" in spec["train"]:
        extra["teacher_model_dir"] = tuple(teacher_dirs or [str(output_root / CARD_NAMES[TEACHER])])
        if transfer_file:
            extra["transfer_file"] = str(transfer_file)
    train = TrainingConfig(output_dir=str(output_dir), disable_tqdm=disable_tqdm, logging_steps=200,
                           license="other", **extra, **{**spec["train"], **overrides.get("train", {})})
    started = time.time()
    train_classifier(data, model, train)
    report = read_json(output_dir / "test_results.json")
    info = read_json(output_dir / "training_info.json")
    return {"dev_accuracy": report["accuracy"], "dev_macro_f1": report["macro_f1"],
            "wall_seconds": time.time() - started, "epochs": info["hyperparameters"]["epochs_completed"],
            "parameters": info["num_parameters"], "output_dir": str(output_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data/sst2")
    parser.add_argument("--output_dir", default="runs/sst2")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--overrides", default="{}",
                        help='JSON: {"lstm": {"model": {...}, "train": {...}, "data": {...}}}')
    parser.add_argument("--copy_cards", help="copy each model card to this folder")
    parser.add_argument("--no_baseline", action="store_true")
    parser.add_argument("--imdb_csv", help="IMDB train.csv.gz: its sentences become the distillation transfer set")
    parser.add_argument("--transfer_sentences", type=int, default=40000)
    parser.add_argument("--teacher_dirs", nargs="+",
                        help=f"teachers of the distilled runs (default: the {TEACHER!r} run in --output_dir)")
    parser.add_argument("--disable_tqdm", action="store_true")
    args = parser.parse_args()
    data_dir, output_root = Path(args.data_dir), Path(args.output_dir)
    overrides = json.loads(args.overrides)

    results = {} if args.no_baseline else {"tfidf+logreg (baseline)": tfidf_baseline(data_dir)}
    transfer_file = None
    taught = [name for name in args.runs if "distillation_alpha" in RUNS[name]["train"]]
    if args.imdb_csv and taught:
        transfer_file = write_transfer_sentences(Path(args.imdb_csv), output_root / "imdb_sentences.txt",
                                                 args.transfer_sentences)
    order = sorted(args.runs, key=lambda name: name in taught)  # the teacher first
    for name in order:
        results[name] = run_textsvc(name, data_dir, output_root, overrides.get(name, {}), args.disable_tqdm,
                                    transfer_file, args.teacher_dirs)
        if args.copy_cards:
            Path(args.copy_cards).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(results[name]["output_dir"]) / "README.md",
                            Path(args.copy_cards) / f"{CARD_NAMES[name]}.md")

    print(f"\nSST-2 dev (872 sentences) on {device_description(pick_device())}")
    print(f"{'model':<26}{'dev acc':>9}{'macro F1':>10}{'epochs':>8}{'wall s':>9}")
    for name, r in results.items():
        print(f"{name:<26}{r['dev_accuracy']:>9.4f}{r.get('dev_macro_f1', float('nan')):>10.4f}"
              f"{r.get('epochs', float('nan')):>8}{r['wall_seconds']:>9.1f}")
    output_root.mkdir(parents=True, exist_ok=True)
    summary = output_root / "summary.json"  # runs made by earlier calls with the same output_dir stay listed
    earlier = json.loads(summary.read_text()) if summary.is_file() else {}
    summary.write_text(json.dumps({**earlier, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
