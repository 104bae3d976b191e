"""textsvc's AVX2 int4 kernel: it computes exactly the arithmetic it claims (each row's blocks of 32 activations
rounded to int8, times the 4-bit grid), a row's result never depends on the rows beside it, torch.compile traces it,
and on AVX2-only CPUs the int4 layers run every product through it and keep no dequantized copy."""

import pytest
import torch
from torch import nn

from textsvc import int4_kernel
from textsvc.quantization import ALL_ROWS, Int4WeightOnlyLinear

pytestmark = pytest.mark.skipif(not int4_kernel.avx2_only_cpu(), reason="the kernel runs on AVX2-only CPUs")


def q4_1_grid(out_features: int, in_features: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random values in 0..15 with a float16 scale and minimum per block of 32 inputs."""
    blocks = in_features // int4_kernel.BLOCK
    values = torch.randint(0, 16, (out_features, in_features))
    scales = (torch.rand(out_features, blocks) * 0.02 + 0.001).half()
    minima = (torch.randn(out_features, blocks) * 0.1).half()
    return values, scales, minima


def reference_product(rows: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, minima: torch.Tensor):
    """The kernel's arithmetic in float64: each block of a row rounded to int8 over its largest magnitude, times q,
    scaled by both steps; plus each block's minimum times the block's exact sum."""
    blocks = rows.reshape(rows.shape[0], -1, int4_kernel.BLOCK)  # (N, blocks, 32)
    largest = blocks.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(largest > 0, 127 / largest, torch.zeros_like(largest))
    rounded = torch.round(blocks * inverse).double()  # float32 product then round-half-even, as the kernel does
    steps = (largest / 127).double()
    grid = values.reshape(values.shape[0], -1, int4_kernel.BLOCK).double()  # (out, blocks, 32)
    integer = torch.einsum("nbi,obi->nob", rounded, grid)  # (N, out, blocks)
    scaled = integer * steps.squeeze(-1)[:, None, :] * scales.double()[None]
    low = blocks.double().sum(-1)[:, None, :] * minima.double()[None]
    return (scaled + low).sum(-1)


def test_the_kernel_builds_on_avx2():
    assert int4_kernel.kernel_available()  # a failed build (no compiler, no ninja) must not pass unseen here


@pytest.mark.parametrize("out_features, in_features", [(8, 32), (24, 96), (64, 64)])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9])
def test_the_kernel_computes_its_arithmetic(out_features, in_features, n):
    torch.manual_seed(n)
    values, scales, minima = q4_1_grid(out_features, in_features)
    rows = torch.randn(n, in_features)
    rows[0, :int4_kernel.BLOCK] = 0  # an all-zero block: step 0, no division by it
    weights = int4_kernel.pack_blocks(values, scales, minima)
    assert weights.shape == (out_features // 8, in_features // 32, int4_kernel.BLOCK_BYTES)
    got = int4_kernel.int4_product(rows, weights)
    expected = reference_product(rows, values, scales, minima)
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-5)


def test_a_rows_result_is_the_same_alone_or_in_any_batch():
    torch.manual_seed(0)
    values, scales, minima = q4_1_grid(48, 128)
    weights = int4_kernel.pack_blocks(values, scales, minima)
    rows = torch.randn(11, 128)
    together = int4_kernel.int4_product(rows, weights)
    for row in range(11):  # bitwise: the same-seed-same-text guarantee rests on it
        assert torch.equal(int4_kernel.int4_product(rows[row:row + 1], weights), together[row:row + 1])
    assert torch.equal(int4_kernel.int4_product(rows[3:10], weights), together[3:10])


def test_the_kernel_refuses_what_it_cannot_read():
    weights = int4_kernel.pack_blocks(*q4_1_grid(8, 64))
    with pytest.raises(RuntimeError, match="differ in inputs"):
        int4_kernel.int4_product(torch.randn(1, 32), weights)
    with pytest.raises(RuntimeError, match="float32"):
        int4_kernel.int4_product(torch.randn(1, 64, dtype=torch.bfloat16), weights)


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
    layer = Int4WeightOnlyLinear(nn.Linear(64, 32, bias=False))
    compiled = torch.compile(layer, dynamic=True, fullgraph=True)
    for n in (1, 3, 6):
        rows = torch.randn(n, 64)
        torch.testing.assert_close(compiled(rows), layer(rows), atol=1e-6, rtol=1e-6)
