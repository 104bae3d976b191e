"""Train -> save -> load -> evaluate -> sample for both generator architectures, and what their directories hold."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, TrainerCallback

import textsvc  # noqa: F401  (registers textsvc's architectures with the Auto classes)
from textsvc.cards.common import read_card_metadata
from textsvc.cli import main
from textsvc.errors import ConfigError
from textsvc.models.lstm import LSTMForCausalLM
from textsvc.training.generator import BUDGET_SCHEDULES, budget_multiplier, card_prompts

from conftest import LM_TRAINING, as_flags, corpus_lines, lm_configs, train_tiny_generator, write_rows

MODEL_CLASSES = {"lstm": LSTMForCausalLM, "transformer": GPT2LMHeadModel}
SECTIONS = ("Model details", "Intended use", "Out-of-scope use", "Training data", "Training procedure",
            "Evaluation results", "Samples", "Limitations and biases", "How to use", "Framework versions")


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_model_dir_is_complete(generator_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_results.json",
                 "samples.json", "training_info.json", "trainer_state.json"):
        assert (generator_dir / name).is_file(), name
    assert not list(generator_dir.glob("*.bin")), "weights are saved as safetensors only"
    assert [path.name for path in generator_dir.parent.iterdir()] == [generator_dir.name]  # no staging, no checkpoints
    info = read_json(generator_dir / "training_info.json")
    assert info["task"] == "text-generation" and info["tokenizer"] == "bpe"
    assert info["hyperparameters"]["global_step"] == 40


def test_loss_falls(generator_dir):
    history = read_json(generator_dir / "trainer_state.json")["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < losses[0] - 1.0
    results = read_json(generator_dir / "eval_results.json")
    vocab = read_json(generator_dir / "training_info.json")["vocab_size"]
    assert results["loss"] < math.log(vocab) - 1.0  # well below a uniform guess
    assert results["perplexity"] == pytest.approx(math.exp(results["loss"]))
    assert results["loss_per_char"] == pytest.approx(results["loss"] * results["num_tokens"] / results["num_chars"])


def test_logged_validation_loss_is_the_saved_models_loss(generator_dir):
    """The loss that picked the best checkpoint is the per-token loss of the model that was saved (transformers
    once logged GPT-2's (T - 1) / T too low, counting each block's first token as predicted)."""
    best = read_json(generator_dir / "training_info.json")["best_checkpoint_metric"]["loss"]
    assert best == pytest.approx(read_json(generator_dir / "eval_results.json")["loss"], rel=1e-6)


def test_save_then_load_gives_identical_logits(generator_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(generator_dir).eval()
    assert type(model) is MODEL_CLASSES[read_json(generator_dir / "training_info.json")["arch"]]
    state = model.state_dict()
    for name, tensor in load_file(generator_dir / "model.safetensors").items():
        assert torch.equal(state[name], tensor), name
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    ids = AutoTokenizer.from_pretrained(generator_dir)("the cat sat on a red box.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_evaluate_command_reproduces_training_figures(generator_dir, corpus_file, tmp_path, capsys):
    text = corpus_file.read_text(encoding="utf-8")
    validation = tmp_path / "validation.txt"
    validation.write_text(text[int(len(text) * 0.9):], encoding="utf-8")
    assert main(["evaluate", "--model_dir", str(generator_dir), "--test_file", str(validation), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = read_json(generator_dir / "eval_results.json")
    assert (report["num_tokens"], report["num_chars"], report["block_size"]) == (
        saved["num_tokens"], saved["num_chars"], saved["block_size"])
    for key in ("loss", "perplexity", "loss_per_char"):
        assert report[key] == pytest.approx(saved[key], rel=1e-5), key


def test_card(generator_dir, corpus_file):
    card = (generator_dir / "README.md").read_text(encoding="utf-8")
    metadata = read_card_metadata(card)
    assert metadata["pipeline_tag"] == "text-generation" and metadata["datasets"] == [corpus_file.parent.name]
    saved = read_json(generator_dir / "eval_results.json")
    (entry,) = metadata["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in entry["metrics"]} == {
        key: round(saved[key], 4) for key in ("loss", "perplexity", "loss_per_char", "bits_per_char")}
    headings = re.findall(r"^## (.+)$", card, re.MULTILINE)
    assert [heading for heading in headings if heading in SECTIONS] == list(SECTIONS)
    samples = read_json(generator_dir / "samples.json")["samples"]
    text = corpus_file.read_text(encoding="utf-8")
    assert [s["prompt"] for s in samples] == list(card_prompts([text[int(len(text) * 0.9):]]))
    for sample in samples:
        assert sample["settings"]["seed"] == 1234 and f"{sample['prompt']}{sample['text']}" in card
    for placeholder in ("todo", "[more information needed]", "lorem", "tbd"):
        assert placeholder not in card.lower()


def test_card_command_renders_the_same_generator_card(lstm_lm_dir, tmp_path):
    model_dir = shutil.copytree(lstm_lm_dir, tmp_path / "copy")
    (model_dir / "README.md").unlink()
    assert main(["card", "--model_dir", str(model_dir)]) == 0

    def undated(card: Path) -> str:  # the card names the day it was rendered, which a run may cross
        text = card.read_text(encoding="utf-8")
        return re.sub(r"Card generated on \d{4}-\d{2}-\d{2}", "Card generated on <day>", text)

    assert "Card generated on <day>" in undated(model_dir / "README.md")
    assert undated(model_dir / "README.md") == undated(lstm_lm_dir / "README.md")


def test_cli_char_tokenizer_jsonl_rows_and_fine_tuning(gpt_lm_dir, tmp_path, capsys):
    rows = [{"id": i, "body": line} for i, line in enumerate(corpus_lines(120, seed=5))]
    train_file = write_rows(tmp_path / "docs.jsonl", rows)
    output_dir = tmp_path / "char-lstm"
    settings = {**LM_TRAINING, "arch": "lstm", "tokenizer_type": "char", "hidden_size": 32, "embedding_dim": 16,
                "max_steps": 10, "validation_split_percentage": 25.0, "text_column": "body", "sample_prompts": ("the",)}
    assert main(["train-generator", "--train_file", str(train_file), "--output_dir", str(output_dir),
                 *as_flags(settings)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["loss_per_char"] == pytest.approx(printed["loss"] * 1.0, rel=0.1)  # ~one token per character
    info = read_json(output_dir / "training_info.json")
    assert info["tokenizer"] == "char" and info["split_sizes"]["validation"]["documents"] == 30
    assert "(30 of 120)" in info["validation_carved"]
    assert [s["prompt"] for s in read_json(output_dir / "samples.json")["samples"]] == ["the"]

    # fine-tuning a pretrained causal LM keeps its tokenizer and cites it in the card
    tuned = train_tiny_generator("transformer", tmp_path / "tuned", train_file, text_column="body",
                                 model_name_or_path=str(gpt_lm_dir), base_model_name="example/tiny-gpt", max_steps=5)
    info = read_json(tuned / "training_info.json")
    assert info["from_scratch"] is False and info["tokenizer"] == "pretrained"
    assert read_json(tuned / "tokenizer.json") == read_json(gpt_lm_dir / "tokenizer.json")
    assert read_card_metadata((tuned / "README.md").read_text())["base_model"] == "example/tiny-gpt"


def test_time_budget_stops_training_then_evaluates_and_saves(corpus_file, tmp_path):
    output = train_tiny_generator("lstm", tmp_path / "budget", corpus_file, max_steps=10_000, max_minutes=0.001)
    info = read_json(output / "training_info.json")
    assert info["stopped_by_time_budget"] is True and info["hyperparameters"]["global_step"] < 10_000
    assert (output / "eval_results.json").is_file() and "wall-clock budget" in (output / "README.md").read_text()


def test_learning_rate_schedule_follows_the_time_budget(corpus_file, tmp_path):
    # max_steps is far out of reach, so a step schedule would barely move; the clock's decays to 0 as time runs out
    output = train_tiny_generator("lstm", tmp_path / "clock", corpus_file, max_steps=1_000_000, max_minutes=0.04,
                                  warmup_ratio=0.2, logging_steps=1, eval_steps=1_000_000)
    rates = [entry["learning_rate"] for entry in read_json(output / "trainer_state.json")["log_history"]
             if "learning_rate" in entry]
    assert len(rates) > 10 and rates[-1] < 0.2 * max(rates)


@pytest.mark.parametrize("progress, expected", [(0.0, 1e-3), (0.1, 0.5), (0.2, 1.0), (0.6, 0.5), (1.0, 0.0)])
def test_budget_schedule_warms_up_then_decays(progress, expected):
    assert budget_multiplier(progress, 0.2, BUDGET_SCHEDULES["cosine"]) == pytest.approx(expected, abs=1e-9)
    constant = expected if progress < 0.2 else 1.0  # the same warm-up, then no decay
    assert budget_multiplier(progress, 0.2, BUDGET_SCHEDULES["constant"]) == pytest.approx(constant)


def test_time_budget_needs_a_schedule_that_can_follow_the_clock(corpus_file, tmp_path):
    with pytest.raises(ConfigError, match="lr_scheduler_type"):
        lm_configs("lstm", tmp_path / "x", corpus_file, max_minutes=1.0, lr_scheduler_type="polynomial")


class Interrupted(KeyboardInterrupt):
    """Stands in for Ctrl-C."""


class InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupted


def test_interrupted_run_needs_resume_then_finishes(corpus_file, tmp_path):
    output_dir, checkpoints = tmp_path / "run", tmp_path / "run.checkpoints"
    with pytest.raises(Interrupted):
        train_tiny_generator("lstm", output_dir, corpus_file, eval_steps=5, max_steps=10,
                             callbacks=[InterruptAfterFirstSave()])
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-5", "tokenizer"]
    with pytest.raises(ConfigError) as error:
        train_tiny_generator("lstm", output_dir, corpus_file, eval_steps=5, max_steps=10)
    assert error.value.code == "unfinished_run" and error.value.field == "resume"
    train_tiny_generator("lstm", output_dir, corpus_file, eval_steps=5, max_steps=10, resume=True)
    assert not checkpoints.exists()
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 10


def test_lstm_works_with_transformers_generate(lstm_lm_dir):
    model = AutoModelForCausalLM.from_pretrained(lstm_lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(lstm_lm_dir)
    ids = tokenizer("the cat", return_tensors="pt")["input_ids"]
    output = model.generate(ids, max_new_tokens=12, do_sample=False)  # one token per step, state carried
    with torch.no_grad():
        full = model(output).logits[0, ids.shape[1] - 1:-1].argmax(-1)  # re-reading the whole text each time
    assert output[0, ids.shape[1]:].tolist() == full.tolist()[:output.shape[1] - ids.shape[1]]


def test_config_file_and_flags_give_the_same_generator_configs(tmp_path):
    from textsvc.cli import build_parser
    from textsvc.config.common import build_configs, read_config_file
    from textsvc.config.training import GeneratorModelConfig, GeneratorTrainingConfig, TextDataConfig

    classes = (TextDataConfig, GeneratorModelConfig, GeneratorTrainingConfig)
    toml = tmp_path / "generator.toml"
    toml.write_text('train_file = "input.txt"\noutput_dir = "out"\narch = "transformer"\ntokenizer_type = "char"\n'
                    'block_size = 64\nmax_minutes = 2.5\nsample_prompts = ["ROMEO:", "JULIET:"]\nresume = true\n')
    flags = ["--train_file", "input.txt", "--output_dir", "out", "--arch", "transformer", "--tokenizer_type", "char",
             "--block_size", "64", "--max_minutes", "2.5", "--sample_prompts", "ROMEO:,JULIET:", "--resume"]
    parsed = vars(build_parser().parse_args(["train-generator", *flags]))
    from_flags = build_configs({k: v for k, v in parsed.items() if k not in ("command", "config")}, *classes)
    assert build_configs(read_config_file(str(toml)), *classes) == from_flags
    assert from_flags[1].from_scratch and from_flags[2].sample_prompts == ("ROMEO:", "JULIET:")
    with pytest.raises(ConfigError) as error:
        build_configs({"train_file": "x", "output_dir": "o", "tokenizer_type": "words"}, *classes)
    assert error.value.field == "tokenizer_type"
