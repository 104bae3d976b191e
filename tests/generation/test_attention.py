"""The decoding steps' attention: one query per row gives what SDPA gives, under grouped key/value heads and either
kind of mask, and the models it is routed into decode as before."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from textsvc.generation.attention import decode_attention, use_decode_attention


@pytest.mark.parametrize("mask_kind", ["none", "additive", "boolean"])
def test_one_query_per_row_matches_sdpa(mask_kind):
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 3, 6, 2, 11, 8
    module = nn.Module()
    module.num_key_value_groups, module.is_causal = heads // kv_heads, True
    query = torch.randn(batch, heads, 1, dim)
    key, value = torch.randn(batch, kv_heads, length, dim), torch.randn(batch, kv_heads, length, dim)
    visible = torch.arange(length)[None, :] >= torch.tensor([0, 4, 7])[:, None]  # rows of different spans
    mask = {"none": None, "boolean": visible[:, None, None, :],
            "additive": torch.zeros(batch, 1, 1, length).masked_fill(~visible[:, None, None, :], -1e30)}[mask_kind]
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    got, _ = decode_attention(module, query, key, value, mask, scaling=0.3)
    assert got.shape == expected.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_a_routed_model_decodes_as_before():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.tensor([[3, 9, 4, 1]])
    before = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert use_decode_attention(model)
    assert model.config._attn_implementation == "textsvc_decode"
    assert torch.equal(model.generate(prompt, max_new_tokens=8, do_sample=False), before)
    model.set_attn_implementation("eager")
    assert not use_decode_attention(model)  # only SDPA models are routed
