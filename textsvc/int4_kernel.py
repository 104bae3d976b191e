"""The AVX2 product of 4-bit weights and 8-bit activations (`int4_kernel.cpp`): its weight layout, and building it.

Why it is written here: on CPUs whose best vector instructions are AVX2 (no AVX-512 BF16, VNNI or AMX), torch's
`_weight_int4pack_mm_for_cpu` converts every weight to float before multiplying, 85-91 ps a weight on 2 threads
whether the weights are cached or not, so it is bound by that conversion, not by memory; `torch._int_mm` has no fast
AVX2 path; torchao's CPU int4 kernels run torch's same operator or need AVX-512/AMX; and the libraries that do have
such a product (llama.cpp's ggml, ONNX Runtime's MatMulNBits) run it only inside their own graphs. llama.cpp's answer
is to round each block of 32 activations to int8 and multiply the 4-bit values by them with integer instructions
(`vpmaddubsw`); this kernel does the same on textsvc's Q4_1 grid, with each tile of 8 output rows interleaved so that
one vector holds all 8 rows' sums. SmolLM2-135M's 30 layers of int4 products (106M weights), one row, 2 threads of
an AVX2 EPYC: about 5.4-6.8 ms against 9.3-11 ms for torch's kernel; 16 rows 24-28 ms against 45-65 ms.

torch.utils.cpp_extension compiles it once per machine (about 15 s, with the system's C++ compiler and ninja) into
torch's extensions folder; where that fails, the layers keep torch's kernels and a warning says why.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

BLOCK = 32  # inputs per block, each with its own scale and minimum (llama.cpp's Q4_1 blocks)
TILE = 8  # output rows interleaved in the packed layout: one float lane each
BLOCK_BYTES = 128 + 2 * TILE * 2  # a tile's 8 x 32 four-bit values, then 8 float16 scales and 8 float16 minima

log = logging.getLogger(__name__)


def avx2_only_cpu() -> bool:
    """Whether AVX2 is the best vector instruction set torch finds here (the CPUs this kernel was measured on)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


@functools.cache
def kernel_available() -> bool:
    """Build and load the kernel on AVX2-only CPUs (once per process; the build once per machine); whether it runs."""
    if not avx2_only_cpu():
        return False
    from torch.utils import cpp_extension  # imports setuptools: only where the kernel is wanted

    try:
        cpp_extension.load(name="textsvc_int4", sources=[str(Path(__file__).with_suffix(".cpp"))],
                           extra_cflags=["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"], is_python_module=False)
    except (OSError, RuntimeError, ImportError) as error:  # no compiler, no ninja, an unwritable cache
        log.warning("int4: the AVX2 kernel did not build (%s); torch's int4 kernel runs instead", error)
        return False
    # the shape of its result, for torch.compile's tracing
    torch.library.register_fake("textsvc::int4_product")(
        lambda rows, weights: rows.new_empty(rows.shape[0], weights.shape[0] * TILE))
    return True


def pack_blocks(values: torch.Tensor, scales: torch.Tensor, minima: torch.Tensor) -> torch.Tensor:
    """(out, in) values in 0..15 with (out, in / 32) float16 scales and minima, as the kernel reads them:
    (out / 8, in / 32, 160) uint8. Per tile and block, chunk c (0..3) of 32 bytes holds at byte 4k + i row k's values
    4c + i (low nibble) and 4c + 16 + i (high nibble)."""
    out_features, in_features = values.shape
    tiles, blocks = out_features // TILE, in_features // BLOCK
    grid = values.to(torch.uint8).reshape(tiles, TILE, blocks, 2, 4, 4)  # (tile, k, block, half, c, i)
    nibbles = grid[:, :, :, 0] | (grid[:, :, :, 1] << 4)  # (tile, k, block, c, i)
    nibbles = nibbles.permute(0, 2, 3, 1, 4).reshape(tiles, blocks, 128)  # (tile, block, c * 32 + 4k + i)

    def per_tile(numbers: torch.Tensor) -> torch.Tensor:  # (out, blocks) float16 -> (tile, block, 16) bytes
        return numbers.reshape(tiles, TILE, blocks).transpose(1, 2).contiguous().view(torch.uint8)

    return torch.cat([nibbles, per_tile(scales), per_tile(minima)], dim=-1).contiguous()


def int4_product(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, in) float32 rows times `pack_blocks`' weights: (N, out) float32."""
    return torch.ops.textsvc.int4_product(rows, weights)
