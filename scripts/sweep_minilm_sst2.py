"""GPU sweep for all-MiniLM-L6-v2 on SST-2: seeds x learning rates x epochs, selected on whole sentences.

SST-2's train split is mostly short phrases, so a validation share carved at random from it is saturated by them
and ranks models unlike dev's whole sentences. Here validation is carved only from training rows of at least
--min_words words (and those rows are taken out of training, with every training phrase that lies inside one of
them: SST-2's train holds each sentence's parse-tree phrases, which would let a model memorise most of a validation
sentence; `--no-drop_validation_phrases` keeps them); every run picks its best epoch on it, and the sweep picks its
best run on it. dev.tsv is the test set: printed for every run, never used to choose.

The runs are separate `textsvc train-classifier` processes, --parallel at a time on the one GPU (MiniLM is small:
an H200 runs several side by side faster than one after another). Sized for one GPU in under 8 minutes:

    python scripts/sweep_minilm_sst2.py --data_dir ../shared/data/sst2 --output_dir runs/sweep
A CPU check that it starts (seconds per run):
    python scripts/sweep_minilm_sst2.py --seeds 1 --learning_rates 5e-5 --epochs 1 --max_train_samples 200 \
        --max_seq_length 32 --parallel 1 --output_dir /tmp/sweep-check
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from benchmark_common import carve_sentence_validation


def run_one(setting: dict, files: dict, args: argparse.Namespace) -> dict:
    """One `train-classifier` process; its validation and dev accuracy read back from the model directory."""
    name = f"lr{setting['learning_rate']:g}-e{setting['epochs']:g}-s{setting['seed']}"
    output_dir = Path(args.output_dir) / "runs" / name
    flags = {"arch": "transformer", "max_seq_length": args.max_seq_length, "learning_rate": setting["learning_rate"],
             "num_train_epochs": setting["epochs"], "seed": setting["seed"],
             "per_device_train_batch_size": args.batch_size, "early_stopping_patience": 0,
             "label_names": "negative,positive", "output_dir": output_dir, **files}
    if args.model_name_or_path:
        flags["model_name_or_path"] = args.model_name_or_path
    if args.max_train_samples:
        flags["max_train_samples"] = args.max_train_samples
    command = [sys.executable, "-m", "textsvc.cli", "train-classifier", "--group_by_length", "--disable_tqdm",
               *[part for key, value in flags.items() for part in (f"--{key}", str(value))]]
    started = time.time()
    log = Path(args.output_dir) / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if status != 0:
        return {**setting, "name": name, "error": f"exit {status}, see {log}"}
    read = lambda split: json.loads((output_dir / f"{split}_results.json").read_text())["accuracy"]  # noqa: E731
    return {**setting, "name": name, "validation_accuracy": read("eval"), "dev_accuracy": read("test"),
            "wall_seconds": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data/sst2")
    parser.add_argument("--output_dir", default="runs/sweep-minilm-sst2")
    parser.add_argument("--model_name_or_path", help="the encoder (default: textsvc's, all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--epochs", type=float, nargs="+", default=[2, 3])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--validation_size", type=int, default=2000)
    parser.add_argument("--min_words", type=int, default=10, help="shortest training row that may validate")
    parser.add_argument("--drop_validation_phrases", action=argparse.BooleanOptionalAction, default=True,
                        help="take out of training every phrase that lies inside a validation sentence")
    parser.add_argument("--max_train_samples", type=int, help="a quick check: train on the first N rows only")
    parser.add_argument("--parallel", type=int, default=6, help="runs side by side on the GPU")
    args = parser.parse_args()

    data_dir, output_root = Path(args.data_dir), Path(args.output_dir)
    train_file, validation_file = carve_sentence_validation(data_dir / "train.tsv", output_root / "data",
                                                            args.validation_size, args.min_words,
                                                            drop_sub_phrases=args.drop_validation_phrases)
    files = {"train_file": train_file, "validation_file": validation_file, "test_file": data_dir / "dev.tsv"}
    settings = [{"learning_rate": lr, "epochs": epochs, "seed": seed}
                for lr, epochs, seed in itertools.product(args.learning_rates, args.epochs, args.seeds)]
    started, results = time.time(), []
    with ThreadPoolExecutor(args.parallel) as pool:
        for result in as_completed([pool.submit(run_one, setting, files, args) for setting in settings]):
            results.append(result.result())  # written as each run ends: a sweep cut short keeps what finished
            (output_root / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
            print(f"[{time.time() - started:.0f} s] {json.dumps(results[-1])}", flush=True)

    done = sorted((r for r in results if "error" not in r), key=lambda r: -r["validation_accuracy"])
    dropped = " (their phrases dropped from training)" if args.drop_validation_phrases else ""
    print(f"\n{len(settings)} runs in {time.time() - started:.0f} s; validation: {args.validation_size} training "
          f"rows of >= {args.min_words} words{dropped}; sorted by validation accuracy (dev is never used to choose)")
    print(f"{'run':<26}{'val acc':>9}{'dev acc':>9}{'wall s':>9}")
    for r in done:
        print(f"{r['name']:<26}{r['validation_accuracy']:>9.4f}{r['dev_accuracy']:>9.4f}{r['wall_seconds']:>9.1f}")
    for r in results:
        if "error" in r:
            print(f"{r['name']:<26}failed: {r['error']}")
    if done:
        print(f"selected on validation: {done[0]['name']}, dev accuracy {done[0]['dev_accuracy']:.4f}")


if __name__ == "__main__":
    main()
