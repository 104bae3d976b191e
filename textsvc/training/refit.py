"""Refitting a classifier on its training and validation rows together, once validation has chosen the epoch.

Early stopping spends a validation share on one decision, how many epochs to train. Once that is made, the rows can
train too: the refit starts again from the selection run's initial weights and runs the same schedule (same epoch
count, so the learning rate at each epoch is the same) on training + validation, stopping at the chosen epoch. This is
the `refit` of scikit-learn's searches, with the epoch as the searched setting (what it measured: `default_refit`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn
from transformers import TrainerCallback, TrainerState, TrainingArguments

INITIAL_WEIGHTS = "initial_weights.safetensors"  # in the run's checkpoints folder, so that a resumed run refits too


def save_initial_weights(model: nn.Module, run_dir: Path, args: TrainingArguments) -> None:
    """Keep the weights training starts from (after any LM pre-training) for the refit; the main process writes."""
    if args.process_index == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_model(model, str(run_dir / INITIAL_WEIGHTS))  # handles tied tensors, unlike save_file


def has_initial_weights(run_dir: Path) -> bool:
    return (run_dir / INITIAL_WEIGHTS).is_file()


def load_initial_weights(model: nn.Module, run_dir: Path) -> None:
    """Put the selection run's starting weights into a freshly built `model` of the same shape (on the CPU, where it
    is built; the Trainer moves it)."""
    load_model(model, str(run_dir / INITIAL_WEIGHTS))


def best_epoch(state: TrainerState) -> float | None:
    """The epoch at whose end validation scored best, or None when no evaluation chose one."""
    if state.best_global_step is None:
        return None
    return next((entry["epoch"] for entry in state.log_history
                 if entry.get("step") == state.best_global_step and "eval_loss" in entry), None)


def refit_arguments(args: TrainingArguments, run_dir: Path) -> TrainingArguments:
    """The selection run's arguments without evaluation or checkpoints: there is nothing left to choose."""
    return dataclasses.replace(args, output_dir=str(run_dir / "refit"), eval_strategy="no", save_strategy="no",
                               load_best_model_at_end=False)


class StopAtEpoch(TrainerCallback):
    """Ends training at the end of `epoch` while the schedule keeps its full length (transformers has no callback
    for it: max_steps would shorten the schedule too)."""

    def __init__(self, epoch: float):
        self.epoch = epoch

    def on_epoch_end(self, args, state, control, **kwargs):
        if round(state.epoch or 0, 6) >= self.epoch:
            control.should_training_stop = True
