"""textsvc's AVX2 int4 and int8 kernels: they compute exactly the arithmetic they claim (each row's blocks of 32
activations rounded to int8, times the weights' grid), a row's result never depends on the rows beside it,
torch.compile traces them, and on AVX2-only CPUs the quantized layers run every product through them and keep no
dequantized copy."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from textsvc import avx2_kernels
from textsvc.quantization import ALL_ROWS, Int4WeightOnlyLinear, Int8WeightOnlyLinear, per_channel_int8

pytestmark = pytest.mark.skipif(not avx2_kernels.avx2_only_cpu(), reason="the kernels run on AVX2-only CPUs")


def q4_1_grid(out_features: int, in_features: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random values in 0..15 with a float16 scale and minimum per block of 32 inputs."""
    blocks = in_features // avx2_kernels.BLOCK
    values = torch.randint(0, 16, (out_features, in_features))
    scales = (torch.rand(out_features, blocks) * 0.02 + 0.001).half()
    minima = (torch.randn(out_features, blocks) * 0.1).half()
    return values, scales, minima


def rounded_blocks(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each block of 32 of each row rounded to int8 over its largest magnitude, as the kernels do (a float32 product,
    then round half to even): the integers, the steps and the blocks themselves, (N, blocks, 32 or 1), float64."""
    blocks = rows.reshape(rows.shape[0], -1, avx2_kernels.BLOCK)
    largest = blocks.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(largest > 0, 127 / largest, torch.zeros_like(largest))
    return torch.round(blocks * inverse).double(), (largest / 127).double(), blocks.double()


def reference_int4(rows: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, minima: torch.Tensor):
    """The int4 kernel's arithmetic in float64: the rounded blocks times q, scaled by both steps; plus each block's
    minimum times the block's exact sum."""
    rounded, steps, blocks = rounded_blocks(rows)
    grid = values.reshape(values.shape[0], -1, avx2_kernels.BLOCK).double()  # (out, blocks, 32)
    integer = torch.einsum("nbi,obi->nob", rounded, grid)  # (N, out, blocks)
    scaled = integer * steps.squeeze(-1)[:, None, :] * scales.double()[None]
    low = blocks.sum(-1)[:, None, :] * minima.double()[None]
    return (scaled + low).sum(-1)


def reference_int8(rows: torch.Tensor, values: torch.Tensor, scales: torch.Tensor):
    """The int8 kernel's arithmetic in float64: the rounded blocks times the int8 values, each block by its step,
    each output by its scale."""
    rounded, steps, _ = rounded_blocks(rows)
    grid = values.reshape(values.shape[0], -1, avx2_kernels.BLOCK).double()
    integer = torch.einsum("nbi,obi->nob", rounded, grid)
    return (integer * steps.squeeze(-1)[:, None, :]).sum(-1) * scales.double()


def test_the_kernels_build_on_avx2():
    assert avx2_kernels.kernels_available()  # a failed build (no compiler, no ninja) must not pass unseen here


@pytest.mark.slow
def test_a_build_killed_midway_does_not_block_later_loads(tmp_path):
    """torch's `lock` file, left by a build that was killed, would make every later load wait forever."""
    (tmp_path / avx2_kernels.EXTENSION).mkdir()
    (tmp_path / avx2_kernels.EXTENSION / "lock").touch()
    loads = "from textsvc import avx2_kernels; assert avx2_kernels.kernels_available()"
    # a fresh folder: the kernels are compiled there (about 15 s), then loaded
    subprocess.run([sys.executable, "-c", loads], env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)},
                   check=True, timeout=300)
    assert not (tmp_path / avx2_kernels.EXTENSION / "lock").exists()


@pytest.mark.parametrize("out_features, in_features", [(8, 32), (24, 96), (64, 64)])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9])
def test_the_int4_kernel_computes_its_arithmetic(out_features, in_features, n):
    torch.manual_seed(n)
    values, scales, minima = q4_1_grid(out_features, in_features)
    rows = torch.randn(n, in_features)
    rows[0, :avx2_kernels.BLOCK] = 0  # an all-zero block: step 0, no division by it
    weights = avx2_kernels.pack_int4(values, scales, minima)
    assert weights.shape == (out_features // 8, in_features // 32, avx2_kernels.INT4_BLOCK_BYTES)
    got = avx2_kernels.int4_product(rows, weights)
    expected = reference_int4(rows, values, scales, minima)
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("out_features, in_features", [(8, 32), (24, 96), (64, 64)])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9])
def test_the_int8_kernel_computes_its_arithmetic(out_features, in_features, n):
    torch.manual_seed(n)
    values = torch.randint(-127, 128, (out_features, in_features))
    scales = torch.rand(out_features) * 0.01
    rows = torch.randn(n, in_features) * 3
    rows[-1, -avx2_kernels.BLOCK:] = 0
    weights = avx2_kernels.pack_int8(values)
    assert weights.shape == (out_features // 8, in_features // 32, avx2_kernels.INT8_BLOCK_BYTES)
    got = avx2_kernels.int8_product(rows, weights, scales)
    torch.testing.assert_close(got.double(), reference_int8(rows, values, scales), atol=1e-5, rtol=1e-5)


def test_a_rows_result_is_the_same_alone_or_in_any_batch():
    torch.manual_seed(0)
    values, scales, minima = q4_1_grid(48, 128)
    weights = avx2_kernels.pack_int4(values, scales, minima)
    rows = torch.randn(11, 128)
    int8_weights, int8_scales = avx2_kernels.pack_int8(torch.randint(-127, 128, (48, 128))), torch.rand(48)
    for product in (lambda part: avx2_kernels.int4_product(part, weights),
                    lambda part: avx2_kernels.int8_product(part, int8_weights, int8_scales)):
        together = product(rows)
        for row in range(11):  # bitwise: the same-seed-same-text guarantee rests on it
            assert torch.equal(product(rows[row:row + 1]), together[row:row + 1])
        assert torch.equal(product(rows[3:10]), together[3:10])


def test_the_kernels_refuse_what_they_cannot_read():
    weights = avx2_kernels.pack_int4(*q4_1_grid(8, 64))
    with pytest.raises(RuntimeError, match="differ in inputs"):
        avx2_kernels.int4_product(torch.randn(1, 32), weights)
    with pytest.raises(RuntimeError, match="float32"):
        avx2_kernels.int4_product(torch.randn(1, 64, dtype=torch.bfloat16), weights)
    int8_weights = avx2_kernels.pack_int8(torch.zeros(16, 64, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="scales"):
        avx2_kernels.int8_product(torch.randn(1, 64), int8_weights, torch.ones(8))
    with pytest.raises(RuntimeError, match="must be contiguous"):
        avx2_kernels.int8_product(torch.randn(1, 64), weights.view(torch.int8), torch.ones(8))


@torch.inference_mode()
def test_int8_layers_run_every_product_through_it_and_keep_no_dequantized_copy():
    torch.manual_seed(0)
    linear = nn.Linear(64, 40)
    layer, kept = Int8WeightOnlyLinear(linear), Int8WeightOnlyLinear(linear, packed_rows=4)
    assert layer.own_kernel and layer.packed_rows == ALL_ROWS and not hasattr(layer, "dequantized")
    assert not hasattr(layer, "weight_int8")  # torch's kernel's copy is not kept either
    rows = torch.randn(30, 64)
    torch.testing.assert_close(layer(rows)[:4], kept(rows[:4]), atol=0, rtol=0)
    values, scales = per_channel_int8(linear.weight.detach())
    expected = reference_int8(rows, values, scales) + linear.bias.double()
    torch.testing.assert_close(layer(rows).double(), expected, atol=1e-5, rtol=1e-5)
    assert not Int8WeightOnlyLinear(nn.Linear(40, 16)).own_kernel  # inputs not in whole blocks: torch's kernel


@torch.inference_mode()
def test_int4_layers_run_every_product_through_it_and_keep_no_dequantized_copy():
    torch.manual_seed(0)
    linear = nn.Linear(96, 48)
    layer = Int4WeightOnlyLinear(linear)
    assert layer.own_kernel and layer.packed_rows == ALL_ROWS
    assert not hasattr(layer, "dequantized") and not hasattr(layer, "weight_int4")
    kept = Int4WeightOnlyLinear(linear, packed_rows=4)  # a limit given: the same grid, dequantized above it
    rows = torch.randn(40, 96)
    torch.testing.assert_close(layer(rows)[:4], kept(rows[:4]), atol=0, rtol=0)
    # 8-bit activations per block of 32: within about 1% of the float product over the same grid
    many = kept(rows)[4:]
    assert ((layer(rows)[4:] - many).norm() / many.norm()) < 0.02
    assert (layer(rows) - linear(rows)).norm() / linear(rows).norm() < 0.15  # the 4-bit grid itself: about 10%


@torch.inference_mode()
def test_compiled_layers_trace_the_kernel():
    torch.manual_seed(0)
    layers = nn.Sequential(Int4WeightOnlyLinear(nn.Linear(64, 32, bias=False)), Int8WeightOnlyLinear(nn.Linear(32, 16)))
    compiled = torch.compile(layers, dynamic=True, fullgraph=True)
    for n in (1, 3, 6):
        rows = torch.randn(n, 64)
        torch.testing.assert_close(compiled(rows), layers(rows), atol=1e-6, rtol=1e-6)
