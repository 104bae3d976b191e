"""Weight-only quantization of a generator's linear layers, for decoding on the CPU: int8, and int4 in blocks.

Decoding one or a few sequences multiplies a handful of activation rows by every weight, so a step's time is the time
to read the weights from memory; smaller weights are faster ones. torch has packed CPU kernels for that product with
bfloat16 activations: `_weight_int8pack_mm` (int8, one scale per output channel, symmetric, as torchao's int8
weight-only and gpt-fast) and `_weight_int4pack_mm_for_cpu` (4-bit values in blocks of 32 inputs, each block with
its own scale and zero: llama.cpp's Q4_1 layout). Activations are rounded to bfloat16 for them on every CPU: the
kernels convert internally and need no bf16 instructions.

The kernels' time grows with the rows, so larger products (prefills, large decoding batches) run as matmuls over
the dequantized weights, which hold the same values in the model's dtype: the model computes with the quantized grid
on both paths, and a request's tokens do not depend on which path its batch took beyond floating-point rounding.
The dequantized copy keeps the memory of the unquantized weights: this is for speed, not for memory. torchao is not
used: its weight-only linears dequantize and multiply in eager mode, which is slower than the float matmul unless
compiled.

int4 leaves the output projection in int8, as llama.cpp's 4-bit files keep their output tensor at 6 or 8 bits: it is
the largest single weight, and its rounding moves every logit. A model imported from a Q4_1 GGUF file (the default
generator) already lies on that grid: int4 then reproduces the file's weights up to the bfloat16 rounding of each
block's scale and zero.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from textsvc.devices import cpu_has_native_bf16

GROUP_SIZE = 32  # int4: inputs per block with their own scale and zero (llama.cpp's Q4_0/Q4_1 blocks hold 32)
INT4_OUTPUT_MULTIPLE = 16  # the int4 kernel's packing takes outputs in tiles of 16


def packed_kernel_rows() -> int:
    """Up to how many activation rows the packed kernels beat a matmul over the dequantized weights. With bf16
    instructions (AVX-512 BF16, AMX) the matmul runs in bfloat16 and wins from about 8 rows; without them it runs in
    float32, and the kernels win up to about 16 rows (measured on SmolLM2's weights, on 2-core CPUs of each kind)."""
    return 4 if cpu_has_native_bf16() else 16


class WeightOnlyLinear(nn.Module):
    """An `nn.Linear` whose weight lies on a quantized grid: the packed kernel for up to `packed_rows` activation
    rows, a matmul over the dequantized weight above."""

    kind = ""

    def __init__(self, linear: nn.Linear, dequantized: torch.Tensor, tied: bool, packed_rows: int | None):
        super().__init__()
        self.tied = tied  # its weight is also another module's (an output projection tied to the input embedding)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # a plain int: compiled graphs guard on it rather than read it
        self.packed_rows = packed_kernel_rows() if packed_rows is None else packed_rows
        self.dequantized = nn.Buffer(dequantized.to(linear.weight.dtype))
        self.bias = linear.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, self.in_features)  # (N, in)
        if rows.shape[0] > self.packed_rows:
            # on the rows as a matrix: a strided (B, 1, in) slice (a prefill's last positions) would send matmul
            # down its bmm path, which expands a copy of the weight per row (SmolLM2 in int8, a prefill of 16
            # prompts of 22 tokens on 2 cores: 1.02 s, 0.28 s on the rows as a matrix, as in bfloat16)
            output = nn.functional.linear(rows, self.dequantized, self.bias)
        else:
            output = self._packed(rows.to(torch.bfloat16).contiguous()).to(hidden.dtype)
            if self.bias is not None:
                output = output + self.bias
        return output.reshape(*hidden.shape[:-1], self.out_features)

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Int8WeightOnlyLinear(WeightOnlyLinear):
    """(out, in) int8 values times one scale per output channel."""

    kind = "int8"

    def __init__(self, linear: nn.Linear, tied: bool = False, packed_rows: int | None = None):
        weight = linear.weight.detach().float()  # (out, in)
        scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127  # (out,)
        values = torch.round(weight / scales[:, None]).clamp(-127, 127)
        super().__init__(linear, values * scales[:, None], tied, packed_rows)
        self.weight_int8 = nn.Buffer(values.to(torch.int8))
        self.scales = nn.Buffer(scales.to(torch.bfloat16))

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(rows, self.weight_int8, self.scales)


class Int4WeightOnlyLinear(WeightOnlyLinear):
    """4-bit values q in blocks of `GROUP_SIZE` inputs: weight = q * scale + minimum per block (min-max rounding)."""

    kind = "int4"

    def __init__(self, linear: nn.Linear, tied: bool = False, packed_rows: int | None = None):
        out_features, in_features = linear.weight.shape
        blocks = linear.weight.detach().float().reshape(out_features, in_features // GROUP_SIZE, GROUP_SIZE)
        low, high = blocks.amin(dim=-1, keepdim=True), blocks.amax(dim=-1, keepdim=True)
        scales = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)  # (out, blocks, 1)
        values = torch.round((blocks - low) / scales).clamp(0, 15)
        super().__init__(linear, (values * scales + low).reshape(out_features, in_features), tied, packed_rows)
        # the kernel computes (q - 8) * scale + zero, with scales and zeros as (blocks, out, 2)
        zeros = low + 8 * scales
        self.scales_and_zeros = nn.Buffer(torch.cat([scales, zeros], dim=-1).transpose(0, 1).to(torch.bfloat16)
                                          .contiguous())
        self.weight_int4 = nn.Buffer(torch._convert_weight_to_int4pack_for_cpu(
            values.reshape(out_features, in_features).to(torch.int32), 1))

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(rows, self.weight_int4, GROUP_SIZE, self.scales_and_zeros)


def quantize_weight_only(model: nn.Module, kind: str) -> int:
    """Replace every `nn.Linear` of `model` (and GPT-2's `Conv1D`, a linear layer with its weight stored transposed)
    by a weight-only quantized one of `kind` ("int8" or "int4"), in place (the output projection too; a tied input
    embedding keeps its own weights); how many were replaced. int4 keeps
    the output projection, and any layer whose shape its kernel does not take (`int4_fits`), in int8."""
    kept = {id(parameter) for module in model.modules() if not isinstance(module, nn.Linear)
            for parameter in module.parameters(recurse=False)}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                child = _as_linear(child)
            if isinstance(child, nn.Linear):
                blocks = kind == "int4" and child is not output and int4_fits(child)
                layer = Int4WeightOnlyLinear if blocks else Int8WeightOnlyLinear
                setattr(parent, name, layer(child, tied=id(child.weight) in kept))
                replaced += 1
    return replaced


def _as_linear(conv: Conv1D) -> nn.Linear:
    """The `nn.Linear` that computes what a GPT-2 `Conv1D` does (its weight is (in, out))."""
    linear = nn.Linear(conv.nx, conv.nf, device=conv.weight.device, dtype=conv.weight.dtype)
    linear.weight, linear.bias = nn.Parameter(conv.weight.detach().t().contiguous()), conv.bias
    return linear


def int4_fits(linear: nn.Linear) -> bool:
    """Whether the int4 kernel takes this layer's shape: whole blocks of inputs, whole tiles of outputs."""
    return linear.in_features % GROUP_SIZE == 0 and linear.out_features % INT4_OUTPUT_MULTIPLE == 0


def quantization_of(model: nn.Module) -> str:
    """"int4" or "int8" when `quantize_weight_only` ran over `model` with that kind, else "none"."""
    kinds = {module.kind for module in model.modules() if isinstance(module, WeightOnlyLinear)}
    return "int4" if "int4" in kinds else "int8" if kinds else "none"


def parameter_count(model: nn.Module) -> int:
    """The model's parameters, as before quantization: a quantized weight counts once (not its dequantized copy),
    and not at all when it is tied to a weight the model still holds."""
    quantized = [module for module in model.modules() if isinstance(module, WeightOnlyLinear) and not module.tied]
    return (sum(module.in_features * module.out_features for module in quantized)
            + sum(p.numel() for p in model.parameters()))
