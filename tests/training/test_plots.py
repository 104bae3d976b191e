"""Pictures beside each trained model: training curves for every run, a confusion matrix for classifiers, both
shown by the card."""

from __future__ import annotations

import json

from textsvc.training.plots import save_training_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_classifier_saves_its_curves_and_confusion_matrix(model_dir):
    for name in ("training_curves.png", "confusion_matrix.png"):
        assert (model_dir / name).read_bytes().startswith(PNG)
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "](training_curves.png)" in card and "](confusion_matrix.png)" in card


def test_a_generator_saves_its_curves(gpt_lm_dir):
    assert (gpt_lm_dir / "training_curves.png").read_bytes().startswith(PNG)
    assert not (gpt_lm_dir / "confusion_matrix.png").exists()
    card = (gpt_lm_dir / "README.md").read_text(encoding="utf-8")
    assert "](training_curves.png)" in card and "confusion_matrix" not in card


def test_no_curves_without_logged_steps(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": []}))
    assert save_training_curves(tmp_path) is None and not (tmp_path / "training_curves.png").exists()
    assert save_training_curves(tmp_path / "missing") is None
