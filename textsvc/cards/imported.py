"""The card of a model imported from a GGUF file (`textsvc import-gguf`): where it came from and what the conversion
changed, rendered from its `import_info.json`, and the serving precision figures where they were measured."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCardData

from textsvc.cards import common
from textsvc.cards.generator import precision_section
from textsvc.modeldir import read_json


def render_imported_card(directory: Path, info: dict) -> str:
    """The whole `README.md` for an imported model directory, given its `import_info.json`."""
    # the licence and languages are the GGUF file's own metadata (older imports did not record them)
    data = ModelCardData(license=info.get("license"), language=info.get("languages"), library_name="transformers",
                         pipeline_tag="text-generation", base_model=info["hub_id"], tags=["textsvc", "gguf-import"])
    origin = f"`{info['hub_id']}`" if info["hub_id"] else "an unnamed model"
    precision = read_json(directory / common.PRECISION_RESULTS)
    return common.write_card(data, (
        f"\n# {origin}, imported from GGUF\n\nConverted by `textsvc import-gguf` from `{info['source_file']}` "
        f"({info['architecture']}, {info['num_parameters']:,} parameters). The GGUF weights were de-quantized to "
        "float32: quantized files hold rounded weights, so this directory reproduces the GGUF model, not the original "
        "full-precision checkpoint.\n" + (f"\n{precision_section(precision)}" if precision else "")))
