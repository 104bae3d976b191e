"""Sampling truth tables through the decode loop: greedy, top-k, seeds, stop strings, streaming, log-probabilities
and bad parameters."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from textsvc.cli import main
from textsvc.config.common import build_configs
from textsvc.config.sampling import SamplingConfig
from textsvc.errors import ConfigError
from textsvc.generation.loop import generate, stream
from textsvc.generation.sampling import Sampler, pick_tokens
from textsvc.loading import load_generator

PROMPT = "the old man"


@pytest.fixture
def loaded(generator_dir):
    return load_generator(generator_dir, "cpu")


def run(loaded, prompt=PROMPT, **settings):
    return generate(loaded.model, loaded.tokenizer, prompt, SamplingConfig(**settings))


def test_top_k_1_equals_greedy(loaded):
    greedy = run(loaded, temperature=0, max_new_tokens=30)
    assert greedy.seed is None
    for seed in (0, 1):
        assert run(loaded, top_k=1, temperature=1.5, seed=seed, max_new_tokens=30).token_ids == greedy.token_ids


@pytest.mark.parametrize("logits", [[2.0, 5.0, -1.0], [-7.0, -3.0, -9.0]], ids=["positive", "negative"])
def test_a_tiny_temperature_samples_the_argmax_not_nan(logits):
    # 5 / 1e-200 overflows to inf, and softmax(inf, inf) is NaN: fuzzing /v1/completions found it as a 500
    for seed in range(3):
        sampler = Sampler(SamplingConfig(temperature=1e-200, seed=seed), torch.device("cpu"))
        assert pick_tokens([sampler], [[0]], torch.tensor([logits])) == [1]


def sampler(**settings) -> Sampler:
    return Sampler(SamplingConfig(**settings), torch.device("cpu"))


def test_each_row_of_a_batch_keeps_its_own_settings_and_seed():
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(0))  # (B, V)
    histories = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [11]]
    settings = [{"temperature": 0}, {"temperature": 0.7, "top_k": 5, "seed": 1},
                {"temperature": 1.3, "top_p": 0.8, "seed": 2}, {"temperature": 0, "repetition_penalty": 1.5},
                {"temperature": 1.0, "repetition_penalty": 1.3, "seed": 3}]
    batched = pick_tokens([sampler(**s) for s in settings], histories, logits)
    alone = [pick_tokens([sampler(**s)], [history], logits[i:i + 1])[0]
             for i, (s, history) in enumerate(zip(settings, histories))]
    assert batched == alone  # a row's pick depends on its own logits and seed, not on its neighbours
    assert batched[0] == int(logits[0].argmax())


@pytest.mark.parametrize("settings, allowed", [
    ({"temperature": 1.0, "top_k": 3}, 3),  # the 3 likeliest only
    ({"temperature": 1.0, "top_p": 0.5}, 1),  # the top token holds over half the mass
    ({"temperature": 1.0, "top_k": 1, "top_p": 0.99}, 1),
])
def test_top_k_and_top_p_draw_only_inside_their_set(settings, allowed):
    logits = torch.tensor([[8.0, 5.0, 4.5, 4.0, 3.0, 0.0]])
    drawn = {pick_tokens([sampler(seed=seed, **settings)], [[0]], logits)[0] for seed in range(200)}
    assert drawn <= set(range(allowed)) and (len(drawn) > 1) == (allowed > 1)


def test_draws_follow_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    counts = torch.bincount(torch.tensor([pick_tokens([sampler(temperature=1.0, seed=seed)], [[0]], logits)[0]
                                          for seed in range(3000)]), minlength=3)
    expected = torch.softmax(logits[0], dim=0) * 3000  # 270, 734, 1995
    assert ((counts - expected).abs() < 5 * expected.sqrt()).all(), counts  # within 5 standard deviations


def test_repetition_penalty_matches_transformers():
    from transformers import RepetitionPenaltyLogitsProcessor

    logits = torch.tensor([[2.0, -1.0, 1.9, 0.5]])
    expected = RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0]]), logits.clone()).argmax(dim=-1).item()
    assert pick_tokens([sampler(temperature=0, repetition_penalty=2.0)], [[0]], logits) == [expected] == [2]
    # a negative score already seen is pushed further down
    assert pick_tokens([sampler(temperature=0, repetition_penalty=2.0)], [[0]], torch.tensor([[-0.1, -0.15]])) == [1]


def test_fixed_seed_repeats_and_other_seeds_differ(loaded):
    first = run(loaded, temperature=1.5, top_p=0.95, repetition_penalty=1.2, seed=7, max_new_tokens=40)
    again = run(loaded, temperature=1.5, top_p=0.95, repetition_penalty=1.2, seed=7, max_new_tokens=40)
    other = run(loaded, temperature=1.5, top_p=0.95, repetition_penalty=1.2, seed=8, max_new_tokens=40)
    assert first == again and first.seed == 7
    assert other.token_ids != first.token_ids
    unseeded = run(loaded, temperature=1.5, max_new_tokens=40)
    assert run(loaded, temperature=1.5, max_new_tokens=40, seed=unseeded.seed) == unseeded  # the drawn seed replays


def test_stop_string_cuts_and_is_not_returned(loaded):
    full = run(loaded, temperature=1.2, seed=3, max_new_tokens=40)
    assert full.finish_reason == "length" and len(full.text) > 6
    stop = full.text[4:7]  # spans token boundaries in general
    cut = run(loaded, temperature=1.2, seed=3, max_new_tokens=40, stop=["never appears", stop])
    assert cut.finish_reason == "stop" and cut.text == full.text[:full.text.find(stop)]
    assert cut.token_ids == full.token_ids[:len(cut.token_ids)]


def test_stream_pieces_join_to_the_generated_text(loaded):
    settings = SamplingConfig(temperature=1.2, seed=11, max_new_tokens=40, stop=("zzz",))
    pieces = stream(loaded.model, loaded.tokenizer, PROMPT, settings)
    joined = "".join(pieces)
    assert joined == pieces.result.text == generate(loaded.model, loaded.tokenizer, PROMPT, settings).text
    plain = run(loaded, temperature=0, max_new_tokens=40)
    assert plain.text == loaded.tokenizer.decode(plain.token_ids, skip_special_tokens=True)


def test_logprobs_match_a_full_forward_pass(loaded):
    result = run(loaded, temperature=0.9, seed=5, max_new_tokens=20, logprobs=True)  # within the 32-token context
    assert [lp.token_id for lp in result.logprobs] == list(result.token_ids)
    prompt = loaded.tokenizer(PROMPT)["input_ids"]
    ids = torch.tensor([prompt + list(result.token_ids)])
    with torch.no_grad():
        log_probs = torch.log_softmax(loaded.model(ids).logits[0].float(), dim=-1)  # (T, V)
    expected = [log_probs[len(prompt) - 1 + i, token].item() for i, token in enumerate(result.token_ids)]
    assert [lp.logprob for lp in result.logprobs] == pytest.approx(expected, abs=1e-4)  # the cache/state is exact
    assert run(loaded, max_new_tokens=3, seed=5).logprobs is None


def test_log_probabilities_cost_nothing_unless_asked(loaded, monkeypatch):
    calls = []
    log_softmax = torch.log_softmax
    monkeypatch.setattr(torch, "log_softmax", lambda *args, **kwargs: calls.append(1) or log_softmax(*args, **kwargs))
    plain = run(loaded, temperature=0, max_new_tokens=6)
    assert calls == [] and plain.logprobs is None
    asked = run(loaded, temperature=0, max_new_tokens=6, logprobs=True)
    assert len(calls) == len(asked.logprobs) == len(asked.token_ids) and asked.token_ids == plain.token_ids
    assert [lp.token for lp in asked.logprobs] == [loaded.tokenizer.decode([t]) for t in asked.token_ids]


def test_empty_and_overlong_prompts_and_generation_past_the_context(loaded):
    assert run(loaded, "", temperature=0, max_new_tokens=5).prompt_tokens == 1  # starts from <|endoftext|>
    long_prompt = " ".join(["the cat sat on the mat."] * 40)  # longer than the 32-token context
    result = run(loaded, long_prompt, temperature=0.8, seed=1, max_new_tokens=80)
    assert result.prompt_tokens <= 32 or loaded.model.config.model_type == "textsvc_lstm_lm"
    assert len(result.token_ids) == 80 or result.finish_reason == "eos"


def test_eos_ends_generation(loaded):
    first = run(loaded, temperature=0, max_new_tokens=5).token_ids[0]
    loaded.model.generation_config.eos_token_id = first
    result = run(loaded, temperature=0, max_new_tokens=5)
    assert (result.finish_reason, result.text, result.token_ids) == ("eos", "", (first,))


@pytest.mark.parametrize("settings, field", [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"max_new_tokens": True}, "max_new_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"stop": [""]}, "stop"),
    ({"stop": [3]}, "stop"),
    ({"stop": ["x"] * 17}, "stop"),
    ({"seed": -1}, "seed"),
    ({"logprobs": "yes"}, "logprobs"),
])
def test_each_invalid_parameter_names_its_field(settings, field):
    with pytest.raises(ConfigError) as error:
        SamplingConfig(**settings)
    assert (error.value.code, error.value.field) == ("invalid_config", field)


def test_unknown_parameter_and_frozen_config():
    with pytest.raises(ConfigError) as error:
        build_configs({"temprature": 0.5}, SamplingConfig)
    assert (error.value.code, error.value.field) == ("unknown_setting", "temprature")
    config = SamplingConfig(stop="\n")
    assert config.stop == ("\n",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 2.0


def test_generate_command(lstm_lm_dir, capsys):
    flags = ["generate", "--model_dir", str(lstm_lm_dir), "--prompt", PROMPT, "--seed", "4", "--max_new_tokens", "15"]
    assert main(flags) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(flags + ["--logprobs"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["text"] == second["text"] and len(second["logprobs"]) == second["generated_tokens"]
    assert main(flags + ["--stream"]) == 0
    assert capsys.readouterr().out == first["text"] + "\n"
    assert main(flags + ["--top_p", "2"]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [invalid_config]: top_p")
