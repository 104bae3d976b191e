"""Weight-only quantization of a generator's linear layers, for decoding on the CPU: int8, and int4 in blocks.

Decoding one or a few sequences multiplies a handful of activation rows by every weight, so a step's time is the time
to read the weights from memory; smaller weights are faster ones. torch has packed CPU kernels for that product with
bfloat16 activations: `_weight_int8pack_mm` (int8, one scale per output channel, symmetric, as torchao's int8
weight-only and gpt-fast) and `_weight_int4pack_mm_for_cpu` (4-bit values in blocks of 32 inputs, each block with
its own scale and zero: llama.cpp's Q4_1 layout). Activations are rounded to bfloat16 for them on every CPU: the
kernels convert internally and need no bf16 instructions. On CPUs whose best instructions are AVX2, that int4 kernel
is bound by converting the weights to float (and so is the int8 one); there the layers run textsvc's own kernels
(`avx2_kernels`: the activations rounded to 8 bits per block of 32 and multiplied with integer instructions, as
llama.cpp does), for products of every size.

The kernels' time grows with the rows, so larger products (prefills, large decoding batches) run otherwise. Where the
CPU multiplies int8 by int8 in hardware (AVX-512 VNNI, AVX-VNNI, AMX), as W8A8 (`torch._int_mm`): each activation
row rounded to 8 bits over its own range (asymmetric, per token) times the weight rounded to int8 per output channel.
An activation channel with outliers would spend a row's 8 bits on itself alone, so the weights' input channels are
first scaled by SmoothQuant's factors (Xiao et al. 2023), measured on a short calibration text through the unquantized
model, and the activations divided by them. SmolLM2 int4 on the 2-core EPYC, 16 rows through 30 layers' products
in a compiled step: 18.8 ms against 27.5 ms of bfloat16 matmuls over the dequantized weights. In eager mode the
rounding of the activations costs about what the int8 products save (a prefill of 16 prompts of 22 tokens: 357 ms
against 325, the products alone 96 ms against 227), so prefills gain nothing but memory: the int8 copy is half the
bfloat16 one. Eager decoding steps gain nothing either (SmolLM2 int4 at 16 streams in-process: 226-242 tokens/s
against 220-251), so W8A8, with its accuracy cost, is asked for (`calibration_ids`) only where the decoding steps are
compiled. The cost: a row's activations lose more than bfloat16 rounding on this path, so a request's tokens can
differ with the path its batch took; its loss per character on held-out text is in the README. Elsewhere, larger products run as matmuls over the
dequantized weights, which hold the same values as the grid in the model's dtype. torchao is not used: its weight-only
linears dequantize and multiply in eager mode, which is slower than the float matmul unless compiled. Nor is torch's
dynamic quantization (fbgemm, deprecated): it rounds all of a product's rows over one range, so a row's result would
depend on the rows batched with it.

int4 leaves the output projection in int8, as llama.cpp's 4-bit files keep their output tensor at 6 or 8 bits: it is
the largest single weight, and its rounding moves every logit. A model imported from a Q4_1 GGUF file (the default
generator) already lies on that grid: int4 then reproduces the file's weights up to the bfloat16 rounding of each
block's scale and zero.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from textsvc import avx2_kernels
from textsvc.devices import cpu_has_native_bf16

# int4: inputs per block with their own scale and zero (llama.cpp's Q4_0/Q4_1 blocks hold 32; textsvc's AVX2 kernel
# reads blocks of the same size)
GROUP_SIZE = avx2_kernels.BLOCK
INT4_OUTPUT_MULTIPLE = 16  # the int4 kernels' packing takes outputs in tiles of 16 (torch's) or 8 (textsvc's)
ALL_ROWS = sys.maxsize  # packed_rows of a layer whose packed kernel takes products of any size


SMOOTHING_ALPHA = 0.5  # SmoothQuant's migration strength: the outliers' range split evenly between activations and weights

# What the smoothing factors are measured on: prose, dialogue, figures and code, so that the channels each kind of text
# drives are seen (any text serves; what matters is the channels' largest values, which are the model's own)
CALIBRATION_TEXT = """The council met on Tuesday evening to settle the budget for the coming year. Roads, schools and
the harbour wall each asked for more than the town could raise, and the treasurer, reading from her notes, said that
revenue had fallen 4.7% since March while costs had risen by $1.2 million.
"Then we cut," said the mayor. "Or we borrow," answered a councillor from the back, "and our children pay it."
Once upon a time, in a village by the sea, an old lighthouse keeper kept a logbook of every ship that passed. On
stormy nights he wrote by candlelight: 03:15, a trawler heading north; 04:40, two lights, no answer to the signal.
Q: What is the boiling point of water at sea level? A: 100 degrees Celsius, or 212 degrees Fahrenheit.
def mean(values):
    return sum(values) / len(values) if values else 0.0
Shares in the carmaker rose sharply on Wall Street after it reported quarterly profits above forecasts, while the
striker's late goal gave the champions a 2-1 win and sent them three points clear at the top of the league.
Scientists announced that the probe had sent back its first images of the moon's south pole, where ice may lie in
craters never touched by sunlight. THE END."""


def int8_products() -> bool:
    """Whether this CPU multiplies int8 by int8 in hardware: then products above the packed kernels' rows can be
    W8A8."""
    return torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported()


def packed_kernel_rows(int8_activations: bool = False) -> int:
    """Up to how many activation rows the packed kernels beat the alternative. W8A8 products win from 5 rows (SmolLM2
    int4, 30 layers on the 2-core EPYC: 12.8 ms packed against 10.8 at 5 rows, 7.6 against 10.3 at 4). Without them,
    with bf16 instructions (AVX-512 BF16, AMX), a bfloat16 matmul over the dequantized weights wins from about 8 rows;
    without those it runs in float32, and the kernels win up to about 16 rows (measured on SmolLM2's weights, on
    2-core CPUs of each kind)."""
    return 4 if int8_activations or cpu_has_native_bf16() else 16


def packed_rows_of(model: nn.Module) -> int:
    """Up to how many rows all of `model`'s quantized layers take their packed kernels, so that one row more sends
    some layer down another path (`packed_kernel_rows()` if it has none)."""
    return min((module.packed_rows for module in model.modules() if isinstance(module, WeightOnlyLinear)),
               default=packed_kernel_rows())


def per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) `weight` as integer values in -127..127 (still float) times one scale per output channel: (out,)."""
    scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
    return torch.round(weight / scales[:, None]).clamp(-127, 127), scales


class WeightOnlyLinear(nn.Module):
    """An `nn.Linear` whose weight lies on a quantized grid: the packed kernel for up to `packed_rows` activation
    rows; above, W8A8 products where `int8_activations` (by default where the CPU has int8 instructions), else a
    matmul over the dequantized weight. `input_maxima` (the largest magnitude each input channel took on the
    calibration text) sets the W8A8 path's smoothing; without it the channels are not scaled."""

    kind = ""

    def __init__(self, linear: nn.Linear, dequantized: torch.Tensor, tied: bool, packed_rows: int | None,
                 int8_activations: bool | None, input_maxima: torch.Tensor | None):
        super().__init__()
        self.tied = tied  # its weight is also another module's (an output projection tied to the input embedding)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # plain values: compiled graphs guard on them rather than read them
        self.int8_activations = int8_products() if int8_activations is None else int8_activations
        # textsvc's AVX2 kernels (`avx2_kernels`) beat float32 matmuls at every size measured, so they take all rows
        self.own_kernel = (not self.int8_activations and avx2_kernels.fits(self.out_features, self.in_features)
                           and avx2_kernels.kernels_available())
        default_rows = ALL_ROWS if self.own_kernel else packed_kernel_rows(self.int8_activations)
        self.packed_rows = default_rows if packed_rows is None else packed_rows
        self.bias = linear.bias
        if self.packed_rows == ALL_ROWS:
            pass  # the packed kernel takes every product: no other form of the weights is kept
        elif self.int8_activations:
            self._hold_int8_product(dequantized.float(), input_maxima)
        else:
            self.dequantized = nn.Buffer(dequantized.to(linear.weight.dtype))

    def _hold_int8_product(self, weight: torch.Tensor, input_maxima: torch.Tensor | None) -> None:
        """The smoothed weight in int8 per output channel, and what the product needs besides (see `_int8_product`)."""
        smoothing = torch.ones(self.in_features)
        if input_maxima is not None:
            weight_maxima = weight.abs().amax(dim=0).clamp(min=1e-5)  # (in,)
            smoothing = (input_maxima.float().clamp(min=1e-5) ** SMOOTHING_ALPHA
                         / weight_maxima ** (1 - SMOOTHING_ALPHA)).clamp(min=1e-5)
        values, scales = per_channel_int8(weight * smoothing)
        self.smoothed_int8 = nn.Buffer(values.to(torch.int8))  # (out, in)
        self.smoothed_scales = nn.Buffer(scales)
        self.inverse_smoothing = nn.Buffer(1 / smoothing)
        self.scaled_row_sums = nn.Buffer(values.sum(dim=1) * scales)  # each output's sum of int8 values, scaled

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, self.in_features)  # (N, in)
        if rows.shape[0] <= self.packed_rows:
            output = self._packed(rows).to(hidden.dtype)
        elif self.int8_activations:
            output = self._int8_product(rows).to(hidden.dtype)
        else:
            # on the rows as a matrix: a strided (B, 1, in) slice (a prefill's last positions) would send matmul
            # down its bmm path, which expands a copy of the weight per row (SmolLM2 in int8, a prefill of 16
            # prompts of 22 tokens on 2 cores: 1.02 s, 0.28 s on the rows as a matrix, as in bfloat16)
            output = nn.functional.linear(rows, self.dequantized)
        if self.bias is not None:
            output = output + self.bias
        return output.reshape(*hidden.shape[:-1], self.out_features)

    def _int8_product(self, rows: torch.Tensor) -> torch.Tensor:
        """rows @ weight.T with each row x (smoothed) as (q + 128) * step + low, q in int8: the product is
        step * (q @ W8.T) * scale + (128 * step + low) * (W8's row sums) * scale. In place where it can be: eager
        prefills run this too, and each pass over a (rows, features) float32 tensor costs what the int8 product saves."""
        smoothed = rows * self.inverse_smoothing  # float32, by type promotion
        low, high = torch.aminmax(smoothed, dim=1, keepdim=True)
        step = (high - low).clamp_(min=torch.finfo(torch.float32).tiny).div_(255)
        # within 0..255 before the shift, so no clamp: round(255.00001) is still 255
        values = smoothed.sub_(low).div_(step).round_().sub_(128).to(torch.int8)
        products = torch._int_mm(values.contiguous(), self.smoothed_int8.t()).float()  # (N, out)
        return products.mul_(step).mul_(self.smoothed_scales).addcmul_(low.add(step, alpha=128), self.scaled_row_sums)

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Int8WeightOnlyLinear(WeightOnlyLinear):
    """(out, in) int8 values times one scale per output channel. On AVX2-only CPUs, unless W8A8 is asked for, the
    packed product is textsvc's own kernel, activations rounded to 8 bits per block (`avx2_kernels`), for products of
    every size. SmolLM2's output projection (49,152 x 576) on the 2-core AVX2 EPYC, its weights in cache: 1 row
    0.91 ms against 2.68 for torch's kernel (8.04 for a float32 matmul), 16 rows 4.46 against 15.36 (20.95), 320 rows
    114 against 295 (147), so no dequantized copy is kept. Elsewhere it is torch's kernel."""

    kind = "int8"

    def __init__(self, linear: nn.Linear, tied: bool = False, packed_rows: int | None = None,
                 int8_activations: bool | None = None, input_maxima: torch.Tensor | None = None):
        values, scales = per_channel_int8(linear.weight.detach().float())
        super().__init__(linear, values * scales[:, None], tied, packed_rows, int8_activations, input_maxima)
        if self.own_kernel:
            self.weight_tiles = nn.Buffer(avx2_kernels.pack_int8(values))
            self.row_scales = nn.Buffer(scales.float().contiguous())
            return
        self.weight_int8 = nn.Buffer(values.to(torch.int8))
        self.scales = nn.Buffer(scales.to(torch.bfloat16))

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        if self.own_kernel:
            return avx2_kernels.int8_product(rows.float(), self.weight_tiles, self.row_scales)
        return torch._weight_int8pack_mm(rows.to(torch.bfloat16).contiguous(), self.weight_int8, self.scales)


class Int4WeightOnlyLinear(WeightOnlyLinear):
    """4-bit values q in blocks of `GROUP_SIZE` inputs: weight = q * scale + minimum per block (min-max rounding, the
    scale and minimum in float16 as Q4_1 stores them). On AVX2-only CPUs, unless W8A8 is asked for, the packed
    product is textsvc's own kernel, activations rounded to 8 bits per block (`avx2_kernels`), for products of every
    size. SmolLM2's 30 layers of int4 products on the 2-core AVX2 EPYC: 1 row 5.4-8.3 ms against 9.3-11 for torch's
    kernel, 16 rows 24-28 against 45-65; against float32 matmuls over the dequantized weights 8 rows 9-10 ms against
    47-49, 32 rows 30-35 against 76-77, 320 rows 308-328 against 479-508, so no dequantized copy is kept. Elsewhere it
    is torch's kernel."""

    kind = "int4"

    def __init__(self, linear: nn.Linear, tied: bool = False, packed_rows: int | None = None,
                 int8_activations: bool | None = None, input_maxima: torch.Tensor | None = None):
        out_features, in_features = linear.weight.shape
        blocks = linear.weight.detach().float().reshape(out_features, in_features // GROUP_SIZE, GROUP_SIZE)
        low, high = blocks.amin(dim=-1, keepdim=True), blocks.amax(dim=-1, keepdim=True)
        # float32 values on float16's grid: (out, blocks, 1) each
        scales, low = ((high - low) / 15).half().float(), low.half().float()
        values = torch.round((blocks - low) / scales.clamp(min=torch.finfo(torch.float32).tiny)).clamp(0, 15)
        super().__init__(linear, (values * scales + low).reshape(out_features, in_features), tied, packed_rows,
                         int8_activations, input_maxima)
        if self.own_kernel:
            self.weight_blocks = nn.Buffer(avx2_kernels.pack_int4(
                values.reshape(out_features, in_features), scales.squeeze(-1).half(), low.squeeze(-1).half()))
            return
        # torch's kernel computes (q - 8) * scale + zero, with scales and zeros as (blocks, out, 2)
        zeros = low + 8 * scales
        self.scales_and_zeros = nn.Buffer(torch.cat([scales, zeros], dim=-1).transpose(0, 1).to(torch.bfloat16)
                                          .contiguous())
        self.weight_int4 = nn.Buffer(torch._convert_weight_to_int4pack_for_cpu(
            values.reshape(out_features, in_features).to(torch.int32), 1))

    def _packed(self, rows: torch.Tensor) -> torch.Tensor:
        if self.own_kernel:
            return avx2_kernels.int4_product(rows.float(), self.weight_blocks)
        return torch._weight_int4pack_mm_for_cpu(rows.to(torch.bfloat16).contiguous(), self.weight_int4, GROUP_SIZE,
                                                 self.scales_and_zeros)


def quantize_weight_only(model: nn.Module, kind: str, calibration_ids: torch.Tensor | None = None) -> int:
    """Replace every `nn.Linear` of `model` (and GPT-2's `Conv1D`, a linear layer with its weight stored transposed)
    by a weight-only quantized one of `kind` ("int8" or "int4"), in place (the output projection too; a tied input
    embedding keeps its own weights); how many were replaced. int4 keeps the output projection, and any layer whose
    shape its kernel does not take (`int4_fits`), in int8. With `calibration_ids` ((1, T) token ids,
    `calibration_ids`), the large products are W8A8 where the CPU has int8 instructions: the ids are run through the
    model first to measure their smoothing. Without them they are matmuls over the dequantized weights."""
    w8a8 = calibration_ids is not None and int8_products()
    maxima = input_maxima(model, calibration_ids) if w8a8 else {}
    kept = {id(parameter) for module in model.modules() if not isinstance(module, nn.Linear)
            for parameter in module.parameters(recurse=False)}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            measured = maxima.get(id(child))
            if isinstance(child, Conv1D):
                child = _as_linear(child)
            if isinstance(child, nn.Linear):
                blocks = kind == "int4" and child is not output and int4_fits(child)
                layer = Int4WeightOnlyLinear if blocks else Int8WeightOnlyLinear
                setattr(parent, name, layer(child, tied=id(child.weight) in kept, int8_activations=w8a8,
                                            input_maxima=measured))
                replaced += 1
    return replaced


def calibration_ids(tokenizer) -> torch.Tensor:
    """`CALIBRATION_TEXT` as the (1, T) token ids `quantize_weight_only` takes."""
    return torch.tensor([tokenizer(CALIBRATION_TEXT)["input_ids"]])


@torch.inference_mode()
def input_maxima(model: nn.Module, ids: torch.Tensor) -> dict[int, torch.Tensor]:
    """The largest magnitude each input channel of each linear layer (by `id`) takes while `model` reads `ids`."""
    maxima: dict[int, torch.Tensor] = {}

    def record(module: nn.Module, inputs: tuple) -> None:
        seen = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0).cpu()
        previous = maxima.get(id(module))
        maxima[id(module)] = seen if previous is None else torch.maximum(previous, seen)

    hooks = [module.register_forward_pre_hook(record) for module in model.modules()
             if isinstance(module, (nn.Linear, Conv1D))]
    try:
        model(input_ids=ids.to(model.device))
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


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
