"""AG News benchmark: train textsvc's LSTM on the first 90% of the AG News sample, report on its last 10%.

The TF-IDF 1-2-gram + logistic regression baseline is trained on the same 90% and tested on the same 10% in the
same process. textsvc's runs select their best epoch on a validation share carved from the training 90% only; the
last 10% is read once, at the end.

    python scripts/benchmark_agnews.py --sample ../shared/data/ag_news/train_sample.tsv \
        --runs lstm lstm-minilm lstm-minilm-frozen --copy_cards model_cards
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from benchmark_common import MINILM, SMOLLM2, add_run_flags, copy_card, report, run_recipe, tfidf_baseline

TRAIN_SHARE = 0.9
RUNS = {
    "lstm": {},  # every setting at textsvc's default: the recipe a user gets
    "lstm-minilm": {"model": {"embedding_init": MINILM}},
    "lstm-minilm-frozen": {"model": {"embedding_init": MINILM, "freeze_embeddings": True}},
    "lstm-smollm2-frozen": {"model": {"embedding_init": SMOLLM2, "freeze_embeddings": True}},
    # language-model pre-training on the training texts first (Dai & Le 2015), from scratch and on SmolLM2's embeddings
    "lstm-lm": {"train": {"lm_pretrain_epochs": 2.0}},
    "lstm-smollm2-frozen-lm": {"model": {"embedding_init": SMOLLM2, "freeze_embeddings": True},
                               "train": {"lm_pretrain_epochs": 2.0}},
}
CARD_NAMES = {name: f"agnews-{name}" for name in RUNS}


def read_sample(path: Path) -> list[tuple[str, str]]:
    """(description, label name) rows of the headerless AG News sample, in file order."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]


def write_split(rows: list[tuple[str, str]], path: Path) -> Path:
    """A split as TSV with a `text\\tlabel` header, which textsvc reads without quoting, like the sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="../shared/data/ag_news/train_sample.tsv")
    add_run_flags(parser, RUNS, "runs/agnews", list(RUNS))
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
    for name in args.runs:
        results[name] = run_recipe(RUNS[name], overrides.get(name, {}), output_root / CARD_NAMES[name], data,
                                   {"disable_tqdm": args.disable_tqdm, "logging_steps": 100, "license": "other"})
        copy_card(results[name], args.copy_cards, CARD_NAMES[name])
    report(f"AG News sample, last {len(rows) - cut:,} articles", results, output_root)


if __name__ == "__main__":
    main()
