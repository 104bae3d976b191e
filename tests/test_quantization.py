"""Int8 weight-only generators: the packed kernel and the dequantized matmul agree, the quantized model stays close to
the original, and `serve --quantize int8` serves it and says so."""

import pytest
import torch
from torch import nn

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError
from textsvc.loading import load_generator
from textsvc.quantization import (
    PACKED_KERNEL_ROWS,
    Int8WeightOnlyLinear,
    parameter_count,
    quantization_of,
    quantize_int8_weight_only,
)
from textsvc.serving.engine import Engine


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.inference_mode()
def test_int8_linear_is_close_to_the_original_on_both_paths(dtype):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40).to(dtype)
    quantized = Int8WeightOnlyLinear(linear)
    assert quantized.weight_int8.dtype == torch.int8 and quantized.scales.shape == (40,)
    rows = torch.randn(3 * PACKED_KERNEL_ROWS, 96, dtype=dtype)
    few = quantized(rows[:2])  # the packed kernel
    many = quantized(rows)  # the dequantized matmul
    torch.testing.assert_close(few, many[:2], atol=2e-2, rtol=2e-2)
    error = (many.float() - linear(rows).float()).norm() / linear(rows).float().norm()
    assert error < 0.02  # int8 per-channel rounding: well under 1% on random weights
    assert quantized(rows[:1].reshape(1, 1, 96)).shape == (1, 1, 40)  # leading dimensions kept


@torch.inference_mode()
def test_quantized_generator_keeps_its_size_and_predictions(models_dir):
    plain = load_generator(models_dir / "tiny-gpt", "cpu")
    quantized = load_generator(models_dir / "tiny-gpt", "cpu", quantize="int8")
    linears = sum(isinstance(module, nn.Linear) for module in plain.model.modules())
    assert linears and not any(isinstance(module, nn.Linear) for module in quantized.model.modules())
    assert quantization_of(quantized.model) == "int8" and quantization_of(plain.model) == "none"
    assert parameter_count(quantized.model) == parameter_count(plain.model)  # the tied output projection counts once
    ids = torch.tensor([[3, 14, 15, 9, 26, 5]])
    before, after = plain.model(input_ids=ids).logits, quantized.model(input_ids=ids).logits
    assert (after - before).norm() / before.norm() < 0.05
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() >= 0.8


def test_quantize_is_checked():
    with pytest.raises(ConfigError, match="quantize"):
        ServingConfig(quantize="int4")
    assert quantize_int8_weight_only(nn.Sequential(nn.Embedding(4, 4))) == 0


def test_engine_serves_an_int8_generator(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), quantize="int8", device="cpu", dtype="float32"))
    engine.load()
    described = {name: served.describe() for name, served in engine.models.items()}
    assert described["tiny-gpt"]["quantization"] == "int8"
    assert described["tiny-lstm-lm"]["quantization"] == "int8"  # its output projection
    assert "quantization" not in described["sentiment-bert"]  # classifiers are not quantized
    events = list(engine.models["tiny-gpt"].worker.submit("the cat", SamplingConfig(max_new_tokens=6, temperature=0)))
    assert 1 <= len(events) <= 6 and events[-1].last
    engine.close()
