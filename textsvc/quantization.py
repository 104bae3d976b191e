"""Int8 weight-only quantization of a generator's linear layers, for decoding on the CPU.

Each weight is rounded to int8 with one scale per output channel (symmetric, as torchao's int8 weight-only and
gpt-fast do). Decoding one or a few sequences multiplies a handful of activation rows by every weight, and there
torch's packed kernel `_weight_int8pack_mm` (bfloat16 activations times int8 weights) is 1.7-2.9 times as fast as a
bfloat16 matmul on this 2-core CPU. The kernel's time grows with the rows, though (0.47 times the bfloat16 matmul's
speed at 16 rows), so larger products (prefills, batches of decoding rows) run as bfloat16 matmuls over the
dequantized weights, which hold the same values: the model computes with the int8 grid on both paths, and a request's
tokens do not depend on which path its batch took beyond floating-point rounding. torchao is not used: its
int8 weight-only linear dequantizes and multiplies in eager mode, which is slower than bfloat16 unless compiled.
The dequantized copy keeps the memory of the bfloat16 weights: this is for speed, not for memory.
"""

from __future__ import annotations

import torch
from torch import nn

PACKED_KERNEL_ROWS = 4  # up to this many rows the packed kernel beats the matmul (measured: 4 rows 1.7x, 8 rows 0.8x)


class Int8WeightOnlyLinear(nn.Module):
    """An `nn.Linear` whose weight lies on an int8 grid: (out, in) int8 values times one scale per output."""

    def __init__(self, linear: nn.Linear, tied: bool = False):
        super().__init__()
        self.tied = tied  # its weight is also another module's (an output projection tied to the input embedding)
        weight = linear.weight.detach().float()  # (out, in)
        scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127  # (out,)
        self.weight_int8 = nn.Buffer(torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        dtype = linear.weight.dtype
        self.scales = nn.Buffer(scales.to(dtype))
        self.dequantized = nn.Buffer((self.weight_int8.float() * scales[:, None]).to(dtype))  # for the larger products
        self.bias = linear.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, hidden.shape[-1])
        if rows.shape[0] > PACKED_KERNEL_ROWS or rows.dtype != self.scales.dtype:
            return nn.functional.linear(hidden, self.dequantized, self.bias)
        output = torch._weight_int8pack_mm(rows.contiguous(), self.weight_int8, self.scales)
        if self.bias is not None:
            output = output + self.bias
        return output.reshape(*hidden.shape[:-1], -1)


def quantize_int8_weight_only(model: nn.Module) -> int:
    """Replace every `nn.Linear` of `model` (the output projection too; a tied input embedding keeps its own
    weights) by an `Int8WeightOnlyLinear`, in place; how many were replaced."""
    kept = {id(parameter) for module in model.modules() if not isinstance(module, nn.Linear)
            for parameter in module.parameters(recurse=False)}
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8WeightOnlyLinear(child, tied=id(child.weight) in kept))
                replaced += 1
    return replaced


def quantization_of(model: nn.Module) -> str:
    """"int8" when `quantize_int8_weight_only` ran over `model`, else "none"."""
    return "int8" if any(isinstance(module, Int8WeightOnlyLinear) for module in model.modules()) else "none"


def parameter_count(model: nn.Module) -> int:
    """The model's parameters, as before quantization: a quantized weight counts once (not its dequantized copy),
    and not at all when it is tied to a weight the model still holds."""
    quantized = [module for module in model.modules() if isinstance(module, Int8WeightOnlyLinear) and not module.tied]
    return sum(module.weight_int8.numel() for module in quantized) + sum(p.numel() for p in model.parameters())
