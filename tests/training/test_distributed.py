"""Two-process DDP training on the CPU (gloo) through torchrun writes one complete model directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from textsvc.cli import main

from conftest import LM_ARCH_SETTINGS, LM_TRAINING, LSTM, TRAINING, as_flags


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path, data_dir, capsys):
    output_dir = tmp_path / "ddp-lstm"
    # half the texts without their bag of words: training-time randomness must not reach the recorded loss
    settings = {**TRAINING, **LSTM, "num_train_epochs": 2.0, "bag_of_words_dropout": 0.5}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "textsvc.cli", "train-classifier", "--train_file", str(data_dir / "train.csv"),
               "--validation_file", str(data_dir / "dev.csv"), "--output_dir", str(output_dir), *as_flags(settings)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_results.json",
                 "training_info.json"):
        assert (output_dir / name).is_file(), name
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ddp-lstm"]  # no checkpoints or staging left
    info = json.loads((output_dir / "training_info.json").read_text())
    assert info["hyperparameters"]["world_size"] == 2
    # 120 examples in batches of 16 on each of 2 processes: 4 optimizer steps per epoch
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 8

    # the saved validation loss is the model's own mean loss over the 40 rows: not scaled by the number of processes,
    # nor weighed by the rows that fill the ranks' last batches
    assert main(["evaluate", "--model_dir", str(output_dir), "--test_file", str(data_dir / "dev.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((output_dir / "eval_results.json").read_text())
    assert report["accuracy"] == saved["accuracy"]
    assert report["loss"] == pytest.approx(saved["loss"], abs=1e-5)


@pytest.mark.slow
def test_torchrun_refit_trains_both_ranks_from_the_kept_initial_weights(tmp_path, data_dir):
    output_dir = tmp_path / "ddp-refit"
    settings = {**TRAINING, **LSTM, "num_train_epochs": 3.0, "refit": True}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "textsvc.cli", "train-classifier", "--train_file", str(data_dir / "train.csv"),
               "--validation_file", str(data_dir / "dev.csv"), "--output_dir", str(output_dir), *as_flags(settings)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((output_dir / "training_info.json").read_text())
    assert info["hyperparameters"]["world_size"] == 2
    assert info["refit"]["train_rows"] == 120 + 40 and info["refit"]["epochs_completed"] == info["refit"]["epochs"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ddp-refit"]  # initial weights gone with the rest


@pytest.mark.slow
def test_torchrun_generator_records_the_saved_models_validation_loss(tmp_path, corpus_file):
    output_dir = tmp_path / "ddp-lm"
    # evaluation in batches of 8 blocks over 2 processes: accelerate repeats blocks to fill the last batches
    settings = {**LM_TRAINING, **LM_ARCH_SETTINGS["lstm"], "max_steps": 20, "eval_steps": 10,
                "per_device_eval_batch_size": 8}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "textsvc.cli", "train-generator", "--train_file", str(corpus_file), "--output_dir",
               str(output_dir), *as_flags(settings)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((output_dir / "training_info.json").read_text())["hyperparameters"]["world_size"] == 2
    best = json.loads((output_dir / "training_info.json").read_text())["best_checkpoint_metric"]["loss"]
    assert best == pytest.approx(json.loads((output_dir / "eval_results.json").read_text())["loss"], rel=1e-6)
