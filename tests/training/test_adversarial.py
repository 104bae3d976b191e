"""Adversarial training on the word embeddings: the perturbation, the loss it adds, and models trained with it."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

from textsvc.modeldir import read_json
from textsvc.models.lstm import LSTMConfig, LSTMForSequenceClassification
from textsvc.training.adversarial import AdversarialTrainer, adversarial_perturbation, hooked
from textsvc.training.distillation import TEACHER_COLUMN, DistillationTrainer

from conftest import train_tiny


def test_the_perturbation_has_norm_epsilon_per_text_along_the_gradient():
    gradient = torch.randn(3, 5, 4)
    gradient[2] = 0  # a text whose loss does not move gets no perturbation, not NaN
    perturbation = adversarial_perturbation(gradient, 0.5)
    torch.testing.assert_close(perturbation.flatten(1).norm(dim=1)[:2], torch.tensor([0.5, 0.5]))
    cosine = torch.nn.functional.cosine_similarity(perturbation.flatten(1)[:2], gradient.flatten(1)[:2])
    torch.testing.assert_close(cosine, torch.ones(2))
    assert not perturbation[2].any()


def tiny_lstm(freeze: bool) -> LSTMForSequenceClassification:
    torch.manual_seed(0)
    model = LSTMForSequenceClassification(LSTMConfig(vocab_size=50, embedding_dim=8, hidden_size=8, num_layers=1,
                                                     num_labels=2, dropout=0.0, embedding_dropout=0.0))
    model.get_input_embeddings().weight.requires_grad_(not freeze)
    return model


def batch() -> dict:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 50, (4, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 1, 0])}


def loss_under(model, inputs: dict, perturbation: torch.Tensor) -> float:
    with torch.no_grad(), hooked(model.get_input_embeddings(), lambda embedded: embedded + perturbation):
        return model(**inputs).loss.item()


@pytest.mark.parametrize("freeze", [False, True])
def test_the_training_loss_adds_the_loss_of_the_worst_perturbation(tmp_path, freeze):
    """The loss is the clean loss plus the loss at the gradient's perturbation, which exceeds the clean loss and
    the loss at random perturbations of the same norm; frozen embeddings (outside the graph) work alike."""
    model, inputs = tiny_lstm(freeze), batch()
    trainer = AdversarialTrainer(model=model, args=TrainingArguments(tmp_path, report_to=[], use_cpu=True),
                                 adversarial_epsilon=1.0)
    model.train()
    total = trainer.compute_loss(model, dict(inputs))
    clean = loss_under(model, inputs, torch.zeros(()))
    embedded = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_()
    with hooked(model.get_input_embeddings(), lambda _: embedded):
        (gradient,) = torch.autograd.grad(model(**inputs).loss, embedded)
    worst = loss_under(model, inputs, adversarial_perturbation(gradient, 1.0))
    assert total.item() == pytest.approx(clean + worst, rel=1e-5)
    generator = torch.Generator().manual_seed(2)
    randoms = [loss_under(model, inputs, adversarial_perturbation(torch.randn(gradient.shape, generator=generator),
                                                                 1.0)) for _ in range(5)]
    assert worst > max(randoms) and worst > clean
    total.backward()  # the training step's backward reaches the weights, and the frozen embeddings stay out of it
    assert model.classifier.weight.grad is not None
    assert (model.get_input_embeddings().weight.grad is None) == freeze


def test_evaluation_and_epsilon_zero_give_the_clean_loss(tmp_path):
    model, inputs = tiny_lstm(False), batch()
    args = TrainingArguments(tmp_path, report_to=[], use_cpu=True)
    model.train()
    clean = AdversarialTrainer(model=model, args=args).compute_loss(model, dict(inputs))
    assert clean.item() == pytest.approx(loss_under(model, inputs, torch.zeros(())), rel=1e-6)
    model.eval()
    evaluated = AdversarialTrainer(model=model, args=args, adversarial_epsilon=1.0).compute_loss(model, dict(inputs))
    assert evaluated.item() == pytest.approx(clean.item(), rel=1e-6)


def test_a_distilled_student_is_perturbed_on_its_mixed_loss(tmp_path):
    """Both passes of a distilled student see the teacher's logits: the perturbed pass adds the mixed loss too."""
    model, inputs = tiny_lstm(False), batch()
    inputs[TEACHER_COLUMN] = torch.tensor([[3.0, -3.0], [-3.0, 3.0], [0.0, 0.0], [3.0, -3.0]])
    args = TrainingArguments(tmp_path, report_to=[], use_cpu=True)
    model.train()
    plain = DistillationTrainer(model=model, args=args, alpha=0.3, temperature=2.0)
    adversarial = DistillationTrainer(model=model, args=args, alpha=0.3, temperature=2.0, adversarial_epsilon=1e-6)
    mixed = plain.compute_loss(model, dict(inputs))
    # at a vanishing epsilon the perturbed pass repeats the clean one: twice the mixed loss, not mixed + labels only
    assert adversarial.compute_loss(model, dict(inputs)).item() == pytest.approx(2 * mixed.item(), rel=1e-4)


def test_an_lstm_trained_adversarially_records_it_in_its_card(tmp_path, data_dir):
    output = train_tiny("lstm", tmp_path / "adversarial", data_dir / "train.csv",
                        validation_file=str(data_dir / "dev.csv"), test_file=str(data_dir / "test.csv"),
                        adversarial_epsilon=0.5)
    assert read_json(output / "training_info.json")["hyperparameters"]["adversarial_epsilon"] == 0.5
    assert read_json(output / "test_results.json")["accuracy"] >= 0.9
    card = (output / "README.md").read_text()
    assert "adversarial training, Miyato et al. 2017" in card and "L2 norm 0.5 per text" in card
