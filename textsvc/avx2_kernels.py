"""textsvc's AVX2 products of 4-bit and 8-bit weights with activations rounded to 8 bits (`avx2_kernels.cpp`): their
weight layouts, and building them.

Why they are written here: on CPUs whose best vector instructions are AVX2 (no AVX-512 BF16, VNNI or AMX), torch's
`_weight_int4pack_mm_for_cpu` and `_weight_int8pack_mm` convert every weight to float before multiplying, 85-91 ps a
weight on 2 threads whether the weights are cached or not, so they are bound by that conversion, not by memory;
`torch._int_mm` has no fast AVX2 path; torchao's CPU kernels run those same operators or need AVX-512/AMX; and the
libraries that do have such products (llama.cpp's ggml, ONNX Runtime's MatMulNBits) run them only inside their own
graphs. llama.cpp's answer is to round each block of 32 activations to int8 and multiply the weights' integers by
them with integer instructions (`vpmaddubsw`); these kernels do the same on textsvc's grids (Q4_1 blocks; int8 with
one scale per output row), with each tile of 8 output rows interleaved so that one vector holds all 8 rows' sums.
A row's result never depends on the rows beside it. Figures are in `quantization`'s layers that call them.

torch.utils.cpp_extension compiles them once per machine (about 15 s, with the system's C++ compiler and ninja) into
torch's extensions folder; where that fails, the layers keep torch's kernels and a warning says why.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

BLOCK = 32  # inputs per block, each rounded over its own largest magnitude (llama.cpp's Q4_1 and Q8 blocks)
TILE = 8  # output rows interleaved in the packed layouts: one float lane each
INT4_BLOCK_BYTES = 128 + 2 * TILE * 2  # a tile's 8 x 32 four-bit values, then 8 float16 scales and 8 float16 minima
INT8_BLOCK_BYTES = TILE * BLOCK  # a tile's 8 x 32 int8 values
EXTENSION = "textsvc_avx2"  # the compiled library's name, and its folder under torch's extensions folder

log = logging.getLogger(__name__)


def avx2_only_cpu() -> bool:
    """Whether AVX2 is the best vector instruction set torch finds here (the CPUs these kernels were measured on)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


@functools.cache
def kernels_available() -> bool:
    """Build and load the kernels on AVX2-only CPUs (once per process; the build once per machine); whether they
    run."""
    if not avx2_only_cpu():
        return False
    try:
        build_and_load()
    except (OSError, RuntimeError, ImportError) as error:  # no compiler, no ninja, an unwritable cache
        log.warning("int4/int8: textsvc's AVX2 kernels did not build (%s); torch's kernels run instead", error)
        return False
    # their results' shapes, for torch.compile's tracing
    torch.library.register_fake("textsvc::int4_product")(
        lambda rows, weights: rows.new_empty(rows.shape[0], weights.shape[0] * TILE))
    torch.library.register_fake("textsvc::int8_product")(
        lambda rows, weights, scales: rows.new_empty(rows.shape[0], scales.shape[0]))
    return True


def build_and_load() -> None:
    """Compile the kernels unless torch's extensions folder has them built from this source, and load them. torch
    guards its build with a `lock` file that a killed build leaves behind, after which every load would wait for it
    forever; so builds here take a lock the system releases when its process dies, and holding it, remove any
    `lock` file left."""
    import fcntl

    from torch.utils import cpp_extension  # imports setuptools: only where the kernels are wanted

    # torch's own folder for the extension (TORCH_EXTENSIONS_DIR, else its cache, per Python and accelerator)
    directory = Path(cpp_extension._get_build_directory(EXTENSION, verbose=False))
    with open(directory / "textsvc-build.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)
        cpp_extension.load(name=EXTENSION, sources=[str(Path(__file__).with_suffix(".cpp"))],
                           extra_cflags=["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"], is_python_module=False,
                           build_directory=str(directory))


def fits(out_features: int, in_features: int) -> bool:
    """Whether the kernels take a layer of this shape: whole tiles of outputs, whole blocks of inputs."""
    return out_features % TILE == 0 and in_features % BLOCK == 0


def pack_int4(values: torch.Tensor, scales: torch.Tensor, minima: torch.Tensor) -> torch.Tensor:
    """(out, in) values in 0..15 with (out, in / 32) float16 scales and minima, as the int4 kernel reads them:
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


def pack_int8(values: torch.Tensor) -> torch.Tensor:
    """(out, in) int8 values as the int8 kernel reads them: (out / 8, in / 32, 256) int8. Per tile and block, chunk
    c (0..7) of 32 bytes holds at byte 4k + i row k's value 4c + i."""
    out_features, in_features = values.shape
    tiles, blocks = out_features // TILE, in_features // BLOCK
    grid = values.to(torch.int8).reshape(tiles, TILE, blocks, 8, 4)  # (tile, k, block, c, i)
    return grid.permute(0, 2, 3, 1, 4).reshape(tiles, blocks, INT8_BLOCK_BYTES).contiguous()


def int4_product(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, in) float32 rows times `pack_int4`'s weights: (N, out) float32."""
    return torch.ops.textsvc.int4_product(rows, weights)


def int8_product(rows: torch.Tensor, weights: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, in) float32 rows times `pack_int8`'s weights, each output then times its (out,) float32 scale."""
    return torch.ops.textsvc.int8_product(rows, weights, scales)
