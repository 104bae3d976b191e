"""SST-2 benchmark: train textsvc classifiers on GLUE SST-2 train, report dev accuracy beside a baseline.

The baseline (TF-IDF unigrams+bigrams with logistic regression, needs scikit-learn) runs in the same
process on the same machine, so the figures can be read side by side. Model selection uses validation rows carved
from train, drawn only from its rows of at least --min_words words (SST-2's train is mostly short phrases, which rank
models unlike dev's whole sentences) and taken out of training; dev.tsv is only ever used as the test set.

    python scripts/benchmark_sst2.py --data_dir ../shared/data/sst2 --runs lstm minilm lstm-distilled \
        --imdb_csv ../shared/data/imdb/train.csv.gz --copy_cards model_cards
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from benchmark_common import (
    MINILM,
    SMOLLM2,
    add_run_flags,
    carve_sentence_validation,
    copy_card,
    is_taught,
    read_rows,
    report,
    run_recipe,
    teacher_first,
    teacher_settings,
    tfidf_baseline,
    write_transfer_sentences,
)

RUNS = {
    # random embeddings and a WordPiece tokenizer learnt from train, no bag of words, as the README's LSTM rows were
    # measured
    "lstm": dict(model={"arch": "lstm", "embedding_init": "scratch", "embedding_dim": 300, "hidden_size": 256,
                        "num_layers": 2, "dropout": 0.4, "embedding_dropout": 0.3, "pooling": "max",
                        "vocab_size": 16000, "max_seq_length": 64, "bag_of_words": False},
                 train={"num_train_epochs": 8, "learning_rate": 2e-3, "per_device_train_batch_size": 64,
                        "weight_decay": 0.0, "early_stopping_patience": 3}),
    "minilm": dict(model={"arch": "transformer", "max_seq_length": 64},
                   train={"num_train_epochs": 2, "learning_rate": 5e-5, "per_device_train_batch_size": 32,
                          "early_stopping_patience": 2, "group_by_length": True}),
}
# runs that also learn from the fine-tuned MiniLM's logits (run "minilm" first, or in the same call): the LSTM,
# and MiniLM itself again (self-training: full IMDB sentences the teacher labelled are nearer to SST-2's dev
# sentences than the train split's short phrases)
RUNS["lstm-distilled"] = dict(model=RUNS["lstm"]["model"],
                              train={**RUNS["lstm"]["train"], "num_train_epochs": 4, "early_stopping_patience": 2,
                                     "distillation_alpha": 0.3, "distillation_temperature": 2.0})
RUNS["minilm-self-trained"] = dict(model=RUNS["minilm"]["model"],
                                   train={**RUNS["minilm"]["train"], "distillation_alpha": 0.5,
                                          "distillation_temperature": 2.0})
# the LSTM with all-MiniLM-L6-v2's word embeddings and tokenizer (--embedding_init), fine-tuned, on labels alone
# and distilled
RUNS["lstm-minilm"] = dict(model={**RUNS["lstm"]["model"], "embedding_init": MINILM, "freeze_embeddings": False},
                           train=RUNS["lstm"]["train"])
RUNS["lstm-minilm-distilled"] = dict(model=RUNS["lstm-minilm"]["model"], train=RUNS["lstm-distilled"]["train"])
# the same with SmolLM2-135M-Instruct's input embeddings kept frozen, AG News's best LSTM (see the README)
RUNS["lstm-smollm2-frozen"] = dict(model={**RUNS["lstm"]["model"], "embedding_init": SMOLLM2,
                                          "freeze_embeddings": True}, train=RUNS["lstm"]["train"])
RUNS["lstm-smollm2-frozen-distilled"] = dict(model=RUNS["lstm-smollm2-frozen"]["model"],
                                             train=RUNS["lstm-distilled"]["train"])
# a second round of self-training (Xie et al. 2020, "Noisy Student"): the same recipe, taught by --teacher_dirs,
# which are meant to be the first round's models (averaged when several), over more transfer sentences
RUNS["minilm-self-trained-2"] = RUNS["minilm-self-trained"]
# every setting at textsvc's default (the recipe a user gets; AG News's "lstm"), beside the pinned "lstm" above
RUNS["lstm-default"] = dict(model={}, train={})
TEACHER = "minilm"  # the default teacher of every run above that has a distillation_alpha
CARD_NAMES = {"lstm": "sst2-lstm", "minilm": "sst2-minilm-l6", "lstm-distilled": "sst2-lstm-distilled",
              "minilm-self-trained": "sst2-minilm-l6-self-trained",
              "minilm-self-trained-2": "sst2-minilm-l6-self-trained-2", "lstm-minilm": "sst2-lstm-minilm",
              "lstm-minilm-distilled": "sst2-lstm-minilm-distilled", "lstm-smollm2-frozen": "sst2-lstm-smollm2-frozen",
              "lstm-smollm2-frozen-distilled": "sst2-lstm-smollm2-frozen-distilled",
              "lstm-default": "sst2-lstm-default"}


def imdb_transfer_sentences(imdb_csv: Path, target: Path, count: int) -> Path:
    """Sentences from IMDB reviews (same domain as SST-2, no labels used) as a distillation transfer set."""
    import gzip

    opener = gzip.open if imdb_csv.suffix == ".gz" else open
    with opener(imdb_csv, "rt", encoding="utf-8", newline="") as handle:
        reviews = [row["text"].replace("<br />", " ") for row in csv.DictReader(handle)]
    return write_transfer_sentences(reviews, target, count)


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    rows = read_rows(path)
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def tfidf_on_dev(data_dir: Path) -> dict:
    """The baseline on SST-2: trained on all of train, tested on dev."""
    return tfidf_baseline(*read_tsv(data_dir / "train.tsv"), *read_tsv(data_dir / "dev.tsv"))


def run_textsvc(name: str, files: dict, output_root: Path, overrides: dict, disable_tqdm: bool,
                transfer_file: Path | None = None, teacher_dirs: list[str] | None = None) -> dict:
    teachers = teacher_dirs or [str(output_root / CARD_NAMES[TEACHER])]
    data = {**files, "label_names": ("negative", "positive")}
    return run_recipe(RUNS[name], overrides, output_root / CARD_NAMES[name], data,
                      {"disable_tqdm": disable_tqdm, "logging_steps": 200, "license": "other",
                       **teacher_settings(RUNS[name], teachers, transfer_file)})


def describe_splits(args: argparse.Namespace) -> str:
    """The cards' account of the splits this call made."""
    dropped = (", and the training phrases that lie inside those sentences (SST-2's train holds every phrase of its "
               "sentences' parse trees)") if args.drop_validation_phrases else ""
    return ("GLUE SST-2 (Socher et al. 2013, binary sentiment of movie-review sentences and their phrases): trained on "
            f"its train split less {args.validation_size:,} validation sentences of {args.min_words} or more words "
            f"drawn from it{dropped}; tested on its 872 dev sentences, never used to choose.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data/sst2")
    add_run_flags(parser, RUNS, "runs/sst2", sorted(RUNS))
    parser.add_argument("--imdb_csv", help="IMDB train.csv.gz: its sentences become the distillation transfer set")
    parser.add_argument("--transfer_sentences", type=int, default=40000)
    parser.add_argument("--validation_size", type=int, default=2000)
    parser.add_argument("--min_words", type=int, default=10, help="shortest training row that may validate")
    parser.add_argument("--drop_validation_phrases", action="store_true",
                        help="also take out of training every phrase that lies inside a validation sentence")
    args = parser.parse_args()
    data_dir, output_root = Path(args.data_dir), Path(args.output_dir)
    overrides = json.loads(args.overrides)

    results = {} if args.no_baseline else {"tfidf+logreg (baseline)": tfidf_on_dev(data_dir)}
    transfer_file = None
    if args.imdb_csv and any(is_taught(RUNS[name]) for name in args.runs):
        transfer_file = imdb_transfer_sentences(Path(args.imdb_csv), output_root / "imdb_sentences.txt",
                                                args.transfer_sentences)
    # the folder's name is the data set's name on the cards
    train_file, validation_file = carve_sentence_validation(data_dir / "train.tsv", output_root / "sst2",
                                                            args.validation_size, args.min_words,
                                                            drop_sub_phrases=args.drop_validation_phrases)
    files = {"train_file": str(train_file), "validation_file": str(validation_file),
             "test_file": str(data_dir / "dev.tsv"), "dataset_description": describe_splits(args)}
    for name in teacher_first(args.runs, RUNS):
        results[name] = run_textsvc(name, files, output_root, overrides.get(name, {}), args.disable_tqdm,
                                    transfer_file, args.teacher_dirs)
        copy_card(results[name], args.copy_cards, CARD_NAMES[name])
    report("SST-2 dev (872 sentences)", results, output_root, accuracy_name="dev acc")


if __name__ == "__main__":
    main()
