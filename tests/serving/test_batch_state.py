"""The preallocated key/value seats of a transformer's running batch: rows of any lengths that join, step, leave and
outgrow the capacity give each row the logits it gets decoding alone."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from textsvc.generation.attention import use_decode_attention
from textsvc.serving import batch_state
from textsvc.serving.batch_state import CacheRows, SlotRows, plain_key_value_cache


def tiny_model(kind: str):
    torch.manual_seed(0)
    if kind == "llama":  # grouped-query attention and rotary positions, as SmolLM2
        config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=256)  # learnt absolute positions
    return GPT2LMHeadModel(config).eval()


def prefill(model, prompts: list[list[int]]) -> tuple[CacheRows, torch.Tensor]:
    """Left-padded prompts in one forward pass, as the worker prefills them."""
    longest = max(len(ids) for ids in prompts)
    input_ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompts):
        input_ids[row, longest - len(ids):], mask[row, longest - len(ids):] = torch.tensor(ids), 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    output = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    return CacheRows(output.cache, mask), output.logits[:, -1, :]


def solo_logits(model, ids: list[int]) -> torch.Tensor:
    """The next-token logits of one sequence, read alone with no padding."""
    return model(input_ids=torch.tensor([ids])).logits[0, -1, :]


def nan_filled(tensor: torch.Tensor, *size, **kwargs) -> torch.Tensor:
    """What `new_empty` may hand back: memory a previous batch left, here NaN everywhere."""
    return torch.full(size, float("nan"), dtype=tensor.dtype, device=tensor.device)


@pytest.mark.parametrize("kind", ["llama", "llama-decode-attention", "gpt2"])
@torch.inference_mode()
def test_rows_joining_stepping_and_leaving_match_solo_decoding(kind, monkeypatch):
    monkeypatch.setattr(batch_state, "CAPACITY_STEP", 8)  # so that the rows outgrow the seats twice
    monkeypatch.setattr(torch.Tensor, "new_empty", nan_filled)  # the seats are never read before they are written
    model = tiny_model(kind.removesuffix("-decode-attention"))
    if kind.endswith("decode-attention"):
        assert use_decode_attention(model)
    histories, newcomer_prompt = [[5, 6, 7], [9, 10, 11, 12, 13, 14]], [1]
    rows, logits = prefill(model, histories)
    assert plain_key_value_cache(rows.cache)
    slots = SlotRows(seats=4).join(rows)
    histories[0].append(int(logits[0].argmax()))
    histories[1].append(int(logits[1].argmax()))
    for step in range(14):
        if step == 3:  # a newcomer joins the running rows
            newcomer, logits = prefill(model, [newcomer_prompt])
            slots.join(newcomer)
            histories.append(newcomer_prompt + [int(logits[0].argmax())])
        if step == 7:  # the first row leaves: the others move up a seat
            slots.select([1, 2])
            histories = histories[1:]
        logits = slots.step(model, [history[-1] for history in histories])
        for row, history in enumerate(histories):
            torch.testing.assert_close(logits[row], solo_logits(model, history), atol=1e-4, rtol=1e-4)
            history.append(int(logits[row].argmax()))
    assert slots.keys[0].shape[2] == 24  # grown in steps of 8 to hold the longest row's 6 + 1 + 14 tokens


@torch.inference_mode()
def test_steps_write_in_place_rather_than_reallocating():
    model = tiny_model("llama")
    rows, logits = prefill(model, [[3, 4, 5]])
    slots = SlotRows(seats=2).join(rows)
    storage = [tensor.data_ptr() for tensor in (*slots.keys, *slots.values)]
    for _ in range(5):
        logits = slots.step(model, logits.argmax(dim=-1).tolist())
    slots.join(prefill(model, [[7]])[0])
    assert [tensor.data_ptr() for tensor in (*slots.keys, *slots.values)] == storage


def test_more_rows_than_seats_are_refused():
    model = tiny_model("gpt2")
    with torch.inference_mode():
        rows, _ = prefill(model, [[1, 2], [3], [4]])
    with pytest.raises(ValueError, match="do not fit"):
        SlotRows(seats=2).join(rows)
