"""An interrupted run leaves only its checkpoints, and resuming it gives the uninterrupted run's model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from textsvc.errors import ConfigError

from conftest import train_tiny


class Interrupted(KeyboardInterrupt):
    """Stands in for Ctrl-C."""


class InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupted(f"stopped after saving step {state.global_step}")


def test_resumed_run_matches_uninterrupted_run(tmp_path, data_dir):
    def train(output_dir, **settings):
        # dropout stays on: the Trainer restores the RNG states from the checkpoint
        return train_tiny("lstm", output_dir, data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                          num_train_epochs=3.0, dropout=0.3, embedding_dropout=0.1, **settings)

    output_dir = tmp_path / "interrupted"
    checkpoints = tmp_path / "interrupted.checkpoints"
    with pytest.raises(Interrupted):
        train(output_dir, callbacks=[InterruptAfterFirstSave()])
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-8", "tokenizer"]
    assert not output_dir.exists()
    assert not list(tmp_path.glob(".interrupted.tmp-*"))

    with pytest.raises(ConfigError) as error:
        train(output_dir)
    assert error.value.code == "unfinished_run" and error.value.field == "resume"

    # WordPiece training orders ties by hash-map iteration (huggingface/tokenizers#1794), so two runs learn
    # different token ids. A run reuses the tokenizer in its checkpoints folder: give the reference the same one.
    shutil.copytree(checkpoints / "tokenizer", tmp_path / "reference.checkpoints" / "tokenizer")
    reference = train(tmp_path / "reference")

    train(output_dir, resume=True)
    assert not checkpoints.exists()
    expected, resumed = load_file(reference / "model.safetensors"), load_file(output_dir / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-4, atol=1e-5)
    expected_eval = json.loads((reference / "eval_results.json").read_text())
    resumed_eval = json.loads((output_dir / "eval_results.json").read_text())
    assert resumed_eval["confusion_matrix"] == expected_eval["confusion_matrix"]
    assert resumed_eval["accuracy"] == expected_eval["accuracy"]
    assert resumed_eval["loss"] == pytest.approx(expected_eval["loss"], abs=1e-5)
    resumed_state = json.loads((output_dir / "trainer_state.json").read_text())
    assert resumed_state["global_step"] == json.loads((reference / "trainer_state.json").read_text())["global_step"]
