"""Knowledge distillation: the soft loss, ensembles of teachers, and students trained from tiny teachers end to end."""

from __future__ import annotations

import pytest
import torch

from textsvc.cards import render_card
from textsvc.errors import ConfigError
from textsvc.loading import classify_logits, load_classifier
from textsvc.modeldir import read_json, write_json
from textsvc.training.distillation import soft_target_loss, teacher_logits

from conftest import sentiment_rows, train_tiny, write_rows


def test_soft_loss_is_zero_when_student_matches_teacher():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    assert soft_target_loss(logits, logits.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_loss_grows_with_disagreement_and_scales_with_temperature_squared():
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    near, far = soft_target_loss(student, teacher, 1.0), soft_target_loss(student * 3, teacher * 3, 1.0)
    assert 0 < near < far
    p = torch.softmax(teacher, -1)
    kl = (p * (p.log() - torch.log_softmax(student, -1))).sum()
    assert soft_target_loss(student, teacher, 1.0).item() == pytest.approx(kl.item(), rel=1e-5)


def test_lstm_student_learns_from_teacher(tmp_path, data_dir, transformer_dir):
    output = train_tiny("lstm", tmp_path / "student", data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                        test_file=str(data_dir / "test.csv"), teacher_model_dir=str(transformer_dir),
                        distillation_alpha=0.3, distillation_temperature=3.0)
    info = read_json(output / "training_info.json")
    assert info["distillation"] == {"teachers": [{"name": transformer_dir.name, "base_model": None}],
                                    "alpha": 0.3, "temperature": 3.0}
    assert read_json(output / "test_results.json")["accuracy"] >= 0.9
    card = (output / "README.md").read_text()
    assert f"teacher classifier `{transformer_dir.name}`" in card and "temperature 3.0" in card
    assert "Its weights start from random values" in card
    # directories trained before ensembles recorded a single teacher; their cards still render
    info["distillation"] = {"teacher": "old-teacher", "teacher_base_model": "base", "alpha": 0.3, "temperature": 3.0}
    write_json(output / "training_info.json", info)
    assert "teacher classifier `old-teacher` (fine-tuned from `base`)" in render_card(output)


def test_pretrained_student_learns_from_teacher_and_transfer_texts(tmp_path, data_dir, transformer_dir):
    """Self-training: a pretrained encoder fine-tuned on the labels, the teacher's logits and texts it labelled."""
    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(row["text"] for row in sentiment_rows(30, 9)) + "\n", encoding="utf-8")
    output = train_tiny("transformer", tmp_path / "student", data_dir / "train.csv", model_name_or_path=str(
        transformer_dir), validation_file=str(data_dir / "dev.csv"), teacher_model_dir=str(transformer_dir),
        transfer_file=str(transfer), num_train_epochs=1.0)
    assert read_json(output / "training_info.json")["distillation"]["transfer_examples"] == 30
    card = (output / "README.md").read_text()
    assert "Fine-tuning learnt from the labels and also from the logits of the teacher classifier" in card
    assert "random values" not in card


def test_teachers_log_probabilities_are_averaged_in_the_texts_order(data_dir, lstm_dir, transformer_dir):
    """Batches are sorted by length for speed; each row still belongs to its own text."""
    texts = [row["text"] for row in sentiment_rows(20, 3)]
    texts[3] = " ".join([texts[3]] * 6)  # one long text, so sorting moves it
    expected = sum(torch.log_softmax(classify_logits(load_classifier(d), texts), -1) for d in (lstm_dir,
                                                                                            transformer_dir)) / 2
    averaged = torch.tensor(teacher_logits([str(lstm_dir), str(transformer_dir)], texts, ["neg", "pos"], 4))
    torch.testing.assert_close(averaged, expected, atol=1e-5, rtol=1e-4)
    single = torch.tensor(teacher_logits([str(lstm_dir)], texts, ["pos", "neg"]))  # the student's label order
    own = classify_logits(load_classifier(lstm_dir), texts)
    torch.testing.assert_close(single.softmax(-1), own.softmax(-1)[:, [1, 0]], atol=1e-5, rtol=1e-4)


def test_student_learns_from_an_ensemble_of_teachers(tmp_path, data_dir, lstm_dir, transformer_dir):
    output = train_tiny("lstm", tmp_path / "student", data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                        test_file=str(data_dir / "test.csv"), teacher_model_dir=f"{lstm_dir},{transformer_dir}")
    info = read_json(output / "training_info.json")
    assert [t["name"] for t in info["distillation"]["teachers"]] == [lstm_dir.name, transformer_dir.name]
    assert read_json(output / "test_results.json")["accuracy"] >= 0.9
    card = (output / "README.md").read_text()
    assert f"an ensemble of 2 teacher classifiers, `{lstm_dir.name}`, `{transformer_dir.name}`" in card


def test_teacher_with_other_labels_is_refused(tmp_path, transformer_dir):
    rows = [{"text": row["text"], "label": "yes" if row["label"] == "pos" else "no"} for row in sentiment_rows(40, 5)]
    train_file = write_rows(tmp_path / "yes_no.csv", rows)
    with pytest.raises(ConfigError) as error:
        train_tiny("lstm", tmp_path / "student", train_file, teacher_model_dir=str(transformer_dir))
    assert error.value.code == "teacher_labels_mismatch"


def test_transfer_texts_join_the_training_rows(tmp_path, data_dir, transformer_dir):
    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(row["text"] for row in sentiment_rows(30, 9)) + "\n\n", encoding="utf-8")
    output = train_tiny("lstm", tmp_path / "student", data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                        teacher_model_dir=str(transformer_dir), transfer_file=str(transfer), num_train_epochs=2.0)
    info = read_json(output / "training_info.json")
    assert info["distillation"]["transfer_examples"] == 30
    assert info["distillation"]["transfer_file"] == "transfer.txt"
    assert "30 unlabelled texts from `transfer.txt`" in (output / "README.md").read_text()


def test_transfer_file_needs_a_teacher(tmp_path, data_dir):
    with pytest.raises(ConfigError) as error:
        train_tiny("lstm", tmp_path / "student", data_dir / "train.csv", transfer_file=str(data_dir / "dev.csv"))
    assert error.value.field == "transfer_file"
