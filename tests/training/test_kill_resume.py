"""Training SIGKILLed mid-run in a real `textsvc train-classifier` process, restarted with --resume, ends with the
metrics of the uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import LSTM, TRAINING, as_flags

pytestmark = pytest.mark.slow


def train_command(data_dir, output_dir, *extra: str) -> list[str]:
    settings = {**TRAINING, **LSTM, "num_train_epochs": 30.0, "train_file": str(data_dir / "train.csv"),
                "validation_file": str(data_dir / "dev.csv"), "output_dir": str(output_dir)}
    return [sys.executable, "-m", "textsvc.cli", "train-classifier", *as_flags(settings), *extra]


def test_a_sigkilled_run_resumes_to_the_uninterrupted_metrics(tmp_path, data_dir):
    output_dir, checkpoints = tmp_path / "killed", tmp_path / "killed.checkpoints"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(train_command(data_dir, output_dir), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):  # one whole checkpoint, then kill
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before a checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL and not output_dir.exists()

    # the reference run uses the same tokenizer (WordPiece ties are ordered by hash-map iteration)
    shutil.copytree(checkpoints / "tokenizer", tmp_path / "reference.checkpoints" / "tokenizer")
    for command in (train_command(data_dir, output_dir, "--resume"), train_command(data_dir, tmp_path / "reference")):
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=300)
    resumed = json.loads((output_dir / "eval_results.json").read_text())
    expected = json.loads((tmp_path / "reference" / "eval_results.json").read_text())
    assert resumed["accuracy"] == expected["accuracy"] and resumed["confusion_matrix"] == expected["confusion_matrix"]
    assert resumed["loss"] == pytest.approx(expected["loss"], abs=1e-5)
