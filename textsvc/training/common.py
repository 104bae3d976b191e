"""What every training run shares, classifier or generator: its start (seed, checkpoints, resuming), the common
`TrainingArguments`, a tokenizer learnt once per run, the model directory's files, and the training record."""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from textsvc import __version__
from textsvc.cards import render_card
from textsvc.config.training import OptimisationConfig
from textsvc.devices import device_description, pick_device, pick_precision
from textsvc.errors import ConfigError, ErrorCode
from textsvc.modeldir import write_json, write_model_dir
from textsvc.tokenization import load_tokenizer
from textsvc.training.plots import save_confusion_matrix, save_training_curves

SPLITS = {"test": "test", "eval": "validation"}  # results file prefix -> the split's name


def checkpoints_dir(output_dir: str) -> Path:
    """Where an unfinished run keeps its checkpoints: beside the model directory, never inside it."""
    final = Path(output_dir).resolve()
    return final.parent / f"{final.name}.checkpoints"


def resumable_checkpoint(run_dir: Path, resume: bool) -> str | None:
    """The checkpoint to continue from; an unfinished run is never silently restarted over."""
    last_checkpoint = last_complete_checkpoint(run_dir)
    if last_checkpoint and not resume:
        raise ConfigError(f"resume: {run_dir} holds checkpoints of an unfinished run; pass --resume to "
                          "continue it, or delete that folder to start over",
                          code=ErrorCode.UNFINISHED_RUN, field="resume")
    return last_checkpoint if resume else None


def last_complete_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint that was written whole: the Trainer writes trainer_state.json last, so a run killed
    while saving leaves a newer folder without it, which is skipped (get_last_checkpoint would pick it)."""
    complete = [path for path in run_dir.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    if not complete:
        return get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    return str(max(complete, key=lambda path: int(path.name.rsplit("-", 1)[1])))


def start_run(train: OptimisationConfig) -> tuple[Path, str | None]:
    """Seed the run; its checkpoints folder, and the checkpoint to resume from (if asked)."""
    set_seed(train.seed)
    run_dir = checkpoints_dir(train.output_dir)
    return run_dir, resumable_checkpoint(run_dir, train.resume)


def shared_arguments(train: OptimisationConfig, learning_rate: float, run_dir: Path) -> dict:
    """The `TrainingArguments` every run sets alike: optimisation, precision, bookkeeping, best checkpoint kept."""
    device = pick_device()
    precision = pick_precision(train.precision, device)
    return dict(
        output_dir=str(run_dir), num_train_epochs=train.num_train_epochs, max_steps=train.max_steps,
        learning_rate=learning_rate, weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of all steps
        lr_scheduler_type=train.lr_scheduler_type, per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, max_grad_norm=train.max_grad_norm,
        logging_strategy="steps", logging_steps=train.logging_steps, load_best_model_at_end=True,
        save_total_limit=2,  # the best checkpoint and the latest one
        bf16=precision == "bf16", fp16=precision == "fp16", seed=train.seed,
        dataloader_num_workers=train.dataloader_num_workers, disable_tqdm=train.disable_tqdm, report_to="none",
        # without use_cpu, accelerate sets up no CPU process group under torchrun: each rank would train alone
        use_cpu=device.type == "cpu",
    )


def learnt_tokenizer(run_dir: Path, args: TrainingArguments,
                     learn: Callable[[], PreTrainedTokenizerBase]) -> PreTrainedTokenizerBase:
    """A tokenizer learnt from the training text once per run: the main process learns and saves it in the run
    directory first, so that DDP ranks and a resumed run all use the very same vocabulary."""
    saved = run_dir / "tokenizer"
    with args.main_process_first(desc="training the tokenizer"):
        if (saved / "tokenizer.json").is_file():
            return load_tokenizer(str(saved))
        tokenizer = learn()
        if args.process_index == 0:
            tokenizer.save_pretrained(str(saved))
        return tokenizer


def publish(trainer: Trainer, train: OptimisationConfig, run_dir: Path, write: Callable[[Path], None]) -> Path:
    """On the main process, write the model directory atomically (`write` fills the staging folder) and drop the
    run's checkpoints; every rank waits for it."""
    if trainer.is_world_process_zero():
        write_model_dir(train.output_dir, write)
        if not train.keep_checkpoints:
            shutil.rmtree(run_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return Path(train.output_dir)


def save_model_files(directory: Path, trainer: Trainer, info: dict, results: dict[str, dict],
                     model: transformers.PreTrainedModel | None = None) -> None:
    """Everything a model directory holds: weights (`model`'s where given, else the trainer's), tokenizer, result
    files by name, training record, its pictures (training curves; a classifier's confusion matrix), card."""
    (model or trainer.model).save_pretrained(directory)
    trainer.processing_class.save_pretrained(directory)
    for name, content in results.items():
        write_json(directory / name, content)
    write_json(directory / "train_results.json", info["train_metrics"])
    write_json(directory / "training_info.json", info)
    trainer.state.save_to_json(str(directory / "trainer_state.json"))
    save_training_curves(directory, info["name"])  # `directory` is the staging folder: its name is hidden
    for split in ("test", "eval"):  # a classifier's confusion matrix, of its test split where it has one
        if "confusion_matrix" in results.get(f"{split}_results.json", {}):
            save_confusion_matrix(directory, results[f"{split}_results.json"], SPLITS[split])
            break
    (directory / "README.md").write_text(render_card(directory), encoding="utf-8")


def run_record(trainer: Trainer, train: OptimisationConfig, train_metrics: dict, wall_seconds: float) -> dict:
    """The part of `training_info.json` every run writes alike: its name, size, licence, hardware and versions."""
    return {
        "name": Path(train.output_dir).resolve().name,
        "num_parameters": int(sum(p.numel() for p in trainer.model.parameters())),
        "language": train.language, "license": train.license,
        "train_metrics": train_metrics, "wall_seconds": round(wall_seconds, 1),
        "hardware": device_description(trainer.args.device),
        "framework_versions": {
            "textsvc": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "datasets": version("datasets"), "tokenizers": version("tokenizers"), "python": platform.python_version(),
        },
    }


def optimisation_record(trainer: Trainer, train: OptimisationConfig) -> dict:
    """The hyperparameters every run records alike, read off the `TrainingArguments` the run really used."""
    args = trainer.args
    return {
        "learning_rate": args.learning_rate, "num_train_epochs": args.num_train_epochs,
        "epochs_completed": round(trainer.state.epoch or 0, 2), "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "world_size": args.world_size,
        "weight_decay": args.weight_decay, "warmup_ratio": train.warmup_ratio,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "optimizer": "AdamW", "max_grad_norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32", "seed": args.seed,
    }
