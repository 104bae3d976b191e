"""Weight-only generators: the packed kernels, the W8A8 products and the dequantized matmul agree, smoothing keeps an
outlier channel from costing the others their precision, int4 reproduces weights already on a 4-bit grid, the
quantized model stays close to the original, and `serve --quantize` serves it and says so."""

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError
from textsvc.loading import load_generator
from textsvc.quantization import (
    GROUP_SIZE,
    Int4WeightOnlyLinear,
    Int8WeightOnlyLinear,
    calibration_ids,
    input_maxima,
    int8_products,
    packed_kernel_rows,
    packed_rows_of,
    parameter_count,
    quantization_of,
    quantize_weight_only,
)
from textsvc.serving.engine import Engine


@pytest.mark.parametrize("layer, tolerance", [(Int8WeightOnlyLinear, 0.02), (Int4WeightOnlyLinear, 0.15)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("int8_activations", [False, True])
@torch.inference_mode()
def test_quantized_linear_is_close_to_the_original_on_both_paths(layer, tolerance, dtype, int8_activations):
    torch.manual_seed(0)
    linear = nn.Linear(96, 48).to(dtype)
    quantized = layer(linear, packed_rows=4, int8_activations=int8_activations)
    assert hasattr(quantized, "dequantized") != int8_activations  # the large products' weights, one form only
    rows = torch.randn(12, 96, dtype=dtype)
    few = quantized(rows[:2])  # the packed kernel
    many = quantized(rows)  # W8A8, or the matmul over the dequantized weight
    # the same grid; bf16 activations in the kernel, 8-bit ones (and the weight rounded again per channel) in W8A8
    close = 8e-2 if int8_activations else 3e-2
    torch.testing.assert_close(few, many[:2], atol=close, rtol=close)
    error = (many.float() - linear(rows).float()).norm() / linear(rows).float().norm()
    assert error < tolerance  # int8 per channel: under 1% on random weights; int4 in blocks of 32: about 10%
    assert quantized(rows[:1].reshape(1, 1, 96)).shape == (1, 1, 48)  # leading dimensions kept


@torch.inference_mode()
def test_int4_reproduces_weights_on_a_q4_1_grid():
    """A block of 32 weights d * q + m with q in 0..15 (as a Q4_1 GGUF file holds them) comes back unchanged."""
    torch.manual_seed(0)
    out_features, in_features = 32, 4 * GROUP_SIZE
    values = torch.randint(0, 16, (out_features, in_features // GROUP_SIZE, GROUP_SIZE)).float()
    values[..., 0], values[..., 1] = 0, 15  # the Q4_1 quantizer maps every block's minimum and maximum to 0 and 15
    # the file stores each block's step and minimum in float16
    steps = (torch.rand(out_features, in_features // GROUP_SIZE, 1) * 0.01 + 0.001).half().float()
    minimums = (torch.randn(out_features, in_features // GROUP_SIZE, 1) * 0.05).half().float()
    linear = nn.Linear(in_features, out_features, bias=False)
    linear.weight.data = (values * steps + minimums).reshape(out_features, in_features)
    quantized = Int4WeightOnlyLinear(linear, packed_rows=4, int8_activations=False)  # a dequantized copy kept above 4
    torch.testing.assert_close(quantized.dequantized, linear.weight.data, atol=1e-6, rtol=1e-5)
    rows = torch.randn(1, in_features)
    # torch's kernel: the scales in bfloat16; textsvc's (AVX2): the activations rounded to 8 bits
    torch.testing.assert_close(quantized(rows), linear(rows), atol=2e-2, rtol=2e-2)


@torch.inference_mode()
def test_smoothing_keeps_an_outlier_channel_from_costing_the_others_their_precision():
    """One input channel 50 times the others' size, with weights as much smaller (so its share of the product is
    theirs): rounded over each row's range, 8 bits leave the other channels a coarse step, unless the channels are
    first scaled by SmoothQuant's factors."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False)
    linear.weight.data[:, 5] /= 50
    rows = torch.randn(16, 64)
    rows[:, 5] *= 50
    exact = linear(rows)
    errors = {}
    for smoothed in (False, True):
        maxima = rows.abs().amax(dim=0) if smoothed else None
        quantized = Int8WeightOnlyLinear(linear, packed_rows=0, int8_activations=True, input_maxima=maxima)
        assert torch.equal(quantized.inverse_smoothing == 1, torch.full((64,), not smoothed))
        errors[smoothed] = ((quantized(rows) - exact).norm() / exact.norm()).item()
    assert errors[True] < 0.03 and errors[True] < errors[False] / 2  # measured: 0.024 against 0.066


@torch.inference_mode()
def test_input_maxima_are_each_layers_largest_input_magnitudes(models_dir):
    loaded = load_generator(models_dir / "tiny-gpt", "cpu")
    ids = calibration_ids(loaded.tokenizer)[:, :16]
    maxima = input_maxima(loaded.model, ids)
    output = loaded.model.get_output_embeddings()
    seen = []
    hook = output.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].abs().amax(dim=(0, 1))))
    loaded.model(input_ids=ids)
    hook.remove()
    torch.testing.assert_close(maxima[id(output)], seen[0])
    assert len(maxima) == sum(isinstance(module, (nn.Linear, Conv1D)) for module in loaded.model.modules())
    assert not loaded.model._forward_pre_hooks and not output._forward_pre_hooks  # the hooks are gone again


@pytest.mark.parametrize("kind", ["int8", "int4"])
@torch.inference_mode()
def test_quantized_generator_keeps_its_size_and_predictions(models_dir, kind):
    plain = load_generator(models_dir / "tiny-gpt", "cpu")
    quantized = load_generator(models_dir / "tiny-gpt", "cpu", quantize=kind, int8_activations=True)
    eager = load_generator(models_dir / "tiny-gpt", "cpu", quantize=kind)  # for eager steps: no W8A8
    eager_head = eager.model.get_output_embeddings()
    assert not hasattr(eager_head, "inverse_smoothing")
    assert hasattr(eager_head, "dequantized") != eager_head.own_kernel  # textsvc's AVX2 kernels take every row
    linears = sum(isinstance(module, (nn.Linear, Conv1D)) for module in plain.model.modules())
    assert linears > 1 and not any(isinstance(module, (nn.Linear, Conv1D)) for module in quantized.model.modules())
    assert quantization_of(quantized.model) == kind and quantization_of(plain.model) == "none"
    assert isinstance(quantized.model.get_output_embeddings(), Int8WeightOnlyLinear)  # int4 keeps it in int8
    assert parameter_count(quantized.model) == parameter_count(plain.model)  # the tied output projection counts once
    head = quantized.model.get_output_embeddings()
    if int8_products():  # calibrated where the CPU runs W8A8: the output projection's smoothing is not all ones
        assert (head.inverse_smoothing != 1).any()
    else:  # elsewhere (AVX2 alone) every product runs in textsvc's kernels, or larger ones as float matmuls
        assert not hasattr(head, "inverse_smoothing") and hasattr(head, "dequantized") != head.own_kernel
    ids = torch.tensor([[3, 14, 15, 9, 26, 5]])
    before, after = plain.model(input_ids=ids).logits, quantized.model(input_ids=ids).logits
    assert (after - before).norm() / before.norm() < (0.05 if kind == "int8" else 0.25)
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() >= (0.8 if kind == "int8" else 0.5)


def test_quantize_is_checked():
    with pytest.raises(ConfigError, match="quantize"):
        ServingConfig(quantize="int3")
    assert quantize_weight_only(nn.Sequential(nn.Embedding(4, 4)), "int8") == 0
    odd = nn.Sequential(nn.Linear(GROUP_SIZE + 8, 16), nn.Linear(GROUP_SIZE, 8))  # shapes the int4 kernel refuses
    assert quantize_weight_only(odd, "int4") == 2 and all(isinstance(layer, Int8WeightOnlyLinear) for layer in odd)
    assert packed_kernel_rows() in (4, 16) and packed_kernel_rows(int8_activations=True) <= packed_kernel_rows()
    assert packed_rows_of(odd) == odd[0].packed_rows == packed_kernel_rows()


def test_engine_serves_an_int8_generator(models_dir):
    engine = Engine(ServingConfig(models_dir=str(models_dir), quantize="int8", device="cpu", dtype="float32"))
    engine.load()
    described = {name: served.describe() for name, served in engine.models.items()}
    assert described["tiny-gpt"]["quantization"] == "int8"
    assert described["tiny-lstm-lm"]["quantization"] == "int8"  # its output projection
    assert described["sentiment-bert"]["quantization"] == "none"  # --quantize is the generators' setting
    # no --compile_decoding: eager steps, so no W8A8 (it pays only in compiled steps)
    head = engine.models["tiny-gpt"].worker.model.get_output_embeddings()
    assert hasattr(head, "dequantized") != head.own_kernel and not hasattr(head, "inverse_smoothing")
    events = list(engine.models["tiny-gpt"].worker.submit("the cat", SamplingConfig(max_new_tokens=6, temperature=0)))
    assert 1 <= len(events) <= 6 and events[-1].last
    engine.close()


def test_evaluate_measures_the_w8a8_path_when_asked(models_dir, tmp_path):
    from textsvc.training.evaluation import evaluate_generator

    text = tmp_path / "held_out.txt"
    text.write_text("the cat sees the dog. my friend sees the moon. the dog runs to the cat.\n" * 8)
    plain = evaluate_generator(str(models_dir / "tiny-gpt"), str(text), device="cpu", quantize="int8")
    w8a8 = evaluate_generator(str(models_dir / "tiny-gpt"), str(text), device="cpu", quantize="int8",
                              int8_activations=True)
    assert plain["num_tokens"] == w8a8["num_tokens"]
    assert (w8a8["loss"] != plain["loss"]) == int8_products()  # another path where the CPU has int8 instructions
    assert abs(w8a8["loss"] - plain["loss"]) < 0.05 * plain["loss"]
