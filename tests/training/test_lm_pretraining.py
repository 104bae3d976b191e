"""Language-model pre-training of the LSTM classifier (`lm_pretrain_epochs`): it lowers the language-model loss,
fine-tuning starts from the weights it left, and the directions never read the token they predict."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import TrainerCallback

import textsvc.training.classifier as classifier_module
from textsvc.errors import ConfigError
from textsvc.models.lstm import LSTMConfig, LSTMEncoderLM, LSTMForSequenceClassification, packed_states

from conftest import NEGATIVE, POSITIVE, train_tiny, write_rows

NOUNS = "movie film plot story show acting".split()


def template_rows(n: int, seed: int) -> list[dict]:
    """"the film was really superb"-like texts, alternately positive and negative: word order a language model can
    learn, unlike the shuffled words of `sentiment_rows`."""
    rng = random.Random(seed)
    return [{"text": f"the {rng.choice(NOUNS)} was {rng.choice(['very', 'really', 'quite'])} "
                     f"{rng.choice(POSITIVE if i % 2 == 0 else NEGATIVE)}", "label": "pos" if i % 2 == 0 else "neg"}
            for i in range(n)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("templates")
    for name, size, seed in (("train", 120, 0), ("dev", 40, 1), ("test", 40, 2)):
        write_rows(directory / f"{name}.csv", template_rows(size, seed))
    return directory


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


class StartingWeights(TrainerCallback):
    """Keeps a copy of the classifier's encoder as the classification `Trainer` starts."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.encoder = {name: tensor.clone() for name, tensor in model.encoder.state_dict().items()}


def train(tmp_path, data_dir, name, **settings):
    start = StartingWeights()
    output_dir = train_tiny("lstm", tmp_path / name, data_dir / "train.csv", callbacks=[start],
                            validation_file=str(data_dir / "dev.csv"), test_file=str(data_dir / "test.csv"),
                            **settings)
    return output_dir, start.encoder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """The same tiny BiLSTM (2 layers) with and without 5 epochs of pre-training, the pre-trained encoder as the
    pre-training left it, and the two encoders as classification started."""
    tmp_path = tmp_path_factory.mktemp("lm-pretraining")
    left = {}
    pretrain = classifier_module.lm_pretraining

    def keep_result(classifier, *args, **kwargs):
        record = pretrain(classifier, *args, **kwargs)
        left.update({name: tensor.clone() for name, tensor in classifier.encoder.state_dict().items()})
        return record

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifier_module, "lm_pretraining", keep_result)
        pretrained_dir, pretrained_start = train(tmp_path, data_dir, "pretrained", num_layers=2,
                                                 lm_pretrain_epochs=5.0)
    plain_dir, plain_start = train(tmp_path, data_dir, "plain", num_layers=2)
    return pretrained_dir, pretrained_start, left, plain_dir, plain_start


def test_pretraining_lowers_the_language_model_loss(runs):
    record = read_json(runs[0] / "training_info.json")["lm_pretraining"]
    # from about ln(30) (any of the 30 words) towards the templates' few choices per position
    assert record["validation_loss_after"] < record["validation_loss_before"] - 1.0, record
    assert record["epochs"] == 5.0 and record["steps"] == 5 * 8  # 120 texts in batches of 16
    assert record["pretrained_layers"] == 1 and record["num_layers"] == 2  # the layer above reads both directions
    assert record["output_vocabulary"] == len(["the", "was", *NOUNS, "very", "really", "quite", *POSITIVE, *NEGATIVE])
    assert read_json(runs[3] / "training_info.json")["lm_pretraining"] is None


def test_fine_tuning_starts_from_the_pretrained_weights(runs):
    _, pretrained_start, left, _, plain_start = runs
    assert pretrained_start.keys() == left.keys()
    for name in left:  # classification started from exactly what pre-training left
        torch.testing.assert_close(pretrained_start[name], left[name], rtol=0, atol=0)
    for name in ("embeddings.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse"):  # moved from the start
        assert not torch.allclose(pretrained_start[name], plain_start[name], atol=1e-3), name
    for name in ("lstm.weight_ih_l1", "lstm.weight_hh_l1_reverse"):  # the second layer kept its random start
        torch.testing.assert_close(pretrained_start[name], plain_start[name], rtol=0, atol=0)


def test_pretrained_classifier_learns_and_its_card_says_so(runs):
    assert read_json(runs[0] / "test_results.json")["accuracy"] >= 0.9
    card = (runs[0] / "README.md").read_text()
    assert "language model on the 120 training texts for 5 epochs" in card
    assert "only its first layer" in card


def test_directions_never_read_the_token_they_predict():
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=30, embedding_dim=8, hidden_size=6, num_layers=2, num_labels=2)
    model = LSTMEncoderLM(LSTMForSequenceClassification(config).encoder, torch.arange(30), dropout=0.0).eval()
    assert model.lstm.weight_ih_l0 is model.encoder.lstm.weight_ih_l0  # a view of the first layer, not a copy
    ids, mask = torch.randint(1, 30, (1, 7)), torch.ones(1, 7, dtype=torch.long)
    changed = ids.clone()
    changed[0, 3] = ids[0, 3] % 29 + 1
    before, after = (packed_states(model.lstm, model.encoder.embeddings(x), mask) for x in (ids, changed))
    # token 3 is predicted by the forward states up to 2 and the backward states from 4: none of them moved
    torch.testing.assert_close(before[0, :3, :6], after[0, :3, :6], rtol=0, atol=0)
    torch.testing.assert_close(before[0, 4:, 6:], after[0, 4:, 6:], rtol=0, atol=0)
    assert not torch.allclose(before[0, 3:, :6], after[0, 3:, :6])


def test_pretraining_applies_to_the_lstm_only(tmp_path, data_dir):
    with pytest.raises(ConfigError) as error:
        train_tiny("transformer", tmp_path / "t", data_dir / "train.csv", lm_pretrain_epochs=1.0)
    assert error.value.field == "lm_pretrain_epochs"
