"""Device and numeric precision choices, made once for training, evaluation and serving."""

from __future__ import annotations

import torch

from textsvc.errors import ConfigError
from textsvc.onnx_classifier import onnx_runtime_available


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` if given ("cpu", "cuda", "cuda:1"), else CUDA when present, else the CPU."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as error:
            raise ConfigError(f"device: {error}", field="device") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: CUDA was asked for but no GPU is visible", field="device")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_precision(requested: str, device: torch.device) -> str:
    """"auto" becomes bf16 on GPUs that have it, fp16 on older GPUs, and fp32 on the CPU."""
    if requested != "auto":
        if requested in ("bf16", "fp16") and device.type != "cuda":
            raise ConfigError(f"precision: {requested} training needs a GPU", field="precision")
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The dtype a model is served in. "auto" is bfloat16 on GPUs that have it and on CPUs with AVX-512 BF16 or
    AMX (oneDNN runs bf16 matmuls natively there, about twice float32's speed), else float32."""
    if requested != "auto":
        if requested == "float16" and device.type == "cpu":
            raise ConfigError("dtype: float16 needs a GPU (CPUs compute it slowly or not at all)", field="dtype")
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def pick_classifier_backend(requested: str, dtype: str, device: torch.device, quantize: str = "none") -> str:
    """"torch" or "onnxruntime" for a classifier. "auto" is ONNX Runtime where it measured fastest: on the CPU when
    the classifier runs in float32 (dtype float32, or auto on a CPU without bf16 instructions), if it is installed;
    where `auto` means bf16, torch's bf16 batches served more texts/s (README, Backends and threads on the CPU). An
    explicit "onnxruntime" needs the CPU. An int8 classifier is an ONNX Runtime one: it needs the CPU and ONNX
    Runtime, whatever the dtype."""
    if quantize != "none":
        if requested == "torch":
            raise ConfigError("classifier_quantize: int8 classifiers run in ONNX Runtime; use classifier_backend "
                              "auto or onnxruntime", field="classifier_quantize")
        if device.type != "cpu" or not onnx_runtime_available():
            raise ConfigError("classifier_quantize: int8 needs the CPU and the onnxruntime, onnx and onnxscript "
                              "packages", field="classifier_quantize")
        return "onnxruntime"
    if requested == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError("classifier_backend: onnxruntime runs on the CPU only here; use torch on a GPU",
                              field="classifier_backend")
        if not onnx_runtime_available():
            raise ConfigError("classifier_backend: onnxruntime needs the onnxruntime, onnx and onnxscript packages",
                              field="classifier_backend")
        return requested
    if (requested == "auto" and device.type == "cpu" and pick_dtype(dtype, device) == torch.float32
            and onnx_runtime_available()):
        return "onnxruntime"
    return "torch"


def classifier_batch_tokens(requested: int | None, device: torch.device) -> int:
    """A classifier pass's padded-token budget: `requested`, else TEI's 16,384 on a GPU and 1,024 on the CPU, where
    small passes run faster per text. MiniLM in bf16 on the 2-core EPYC with AVX-512 BF16, 512 AG News texts taken
    32 at a time as /classify's 32 clients send them, each 32 sorted and cut by the budget: 93-97 texts/s at 16,384
    (no cut), 146-151 at 2,048, 180-190 at 1,024, 155-172 at 256 to 768 (ONNX Runtime one text at a time: 100-104)."""
    if requested:
        return requested
    return 16384 if device.type == "cuda" else 1024


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX); plain AVX-512 only emulates them."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def device_description(device: torch.device) -> str:
    """A human name for the card: the GPU's model, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"
