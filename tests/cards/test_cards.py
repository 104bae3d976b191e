"""Model cards: front matter that matches the saved results and reads back through `huggingface_hub`, every section,
no placeholders, and released cards that still read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, ModelCardData

from textsvc.cards import render_card
from textsvc.cards import generator as generator_card
from textsvc.cards.classifier import _distillation, precision_section
from textsvc.cards.common import PRECISION_RESULTS, read_card_metadata, write_card
from textsvc.cli import main
from textsvc.errors import ModelDirError

SECTIONS = ("Model details", "Intended use", "Out-of-scope use", "Training data", "Training procedure",
            "Evaluation results", "Limitations and biases", "How to use", "Framework versions")
METRIC_KEYS = {"accuracy": "accuracy", "precision": "macro_precision", "recall": "macro_recall", "f1": "macro_f1"}
COMMITTED_CARDS = sorted((Path(__file__).parents[2] / "model_cards").glob("*.md"))
ROUTES = {"text-classification": "/classify", "text-generation": "/generate"}


def results(model_dir) -> dict:
    return {split: json.loads((model_dir / f"{name}_results.json").read_text())
            for split, name in (("validation", "eval"), ("test", "test"))}


def test_front_matter(model_dir, data_dir):
    metadata = read_card_metadata((model_dir / "README.md").read_text(encoding="utf-8"))
    assert metadata["license"] == "other" and metadata["language"] == ["en"]
    assert metadata["pipeline_tag"] == "text-classification"
    assert metadata["datasets"] == [data_dir.name]  # the folder holding the data files
    assert set(metadata["metrics"]) >= {"accuracy", "f1"}
    (index,) = metadata["model-index"]
    assert index["name"] == model_dir.name
    saved = results(model_dir)
    assert [entry["dataset"]["split"] for entry in index["results"]] == ["validation", "test"]
    for entry in index["results"]:
        assert entry["task"]["type"] == "text-classification"
        report = saved[entry["dataset"]["split"]]
        reported = {metric["type"]: metric["value"] for metric in entry["metrics"]}
        assert reported == {key: round(report[name], 4) for key, name in METRIC_KEYS.items()}


def test_per_class_tables_match_results(model_dir):
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    saved = results(model_dir)
    for title, split in (("Validation", "validation"), ("Test", "test")):
        section = card.split(f"### {title} (", 1)[1].split("###", 1)[0]
        for label, figures in saved[split]["per_class"].items():
            row = re.search(rf"^\| {label} \| (.+) \|$", section, re.MULTILINE).group(1)
            precision, recall, f1, support = (cell.strip() for cell in row.split("|"))
            assert [float(precision), float(recall), float(f1)] == pytest.approx(
                [figures["precision"], figures["recall"], figures["f1"]], abs=5e-5)
            assert int(support) == figures["support"]


def test_sections_and_no_placeholders(model_dir):
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", card, re.MULTILINE)
    assert [heading for heading in headings if heading in SECTIONS] == list(SECTIONS)
    for placeholder in ("todo", "[more information needed]", "lorem", "tbd", "xxx"):
        assert placeholder not in card.lower()



@pytest.mark.parametrize("from_scratch, embedding_init, start", [
    (True, None, "Its weights start from random values"),
    (True, {"source": "sentence-transformers/all-MiniLM-L6-v2"},
     "Its weights other than the pretrained word embeddings start from random values"),
    (False, None, "Fine-tuning learnt from the labels and also"),
])
def test_distilled_card_says_where_the_weights_started(from_scratch, embedding_init, start):
    info = {"from_scratch": from_scratch, "embedding_init": embedding_init,
            "distillation": {"teachers": [{"name": "teacher"}], "alpha": 0.3, "temperature": 2.0}}
    assert _distillation(info).startswith(f" {start}")


def test_card_command_copies_card(lstm_dir, tmp_path, capsys):
    model_dir = shutil.copytree(lstm_dir, tmp_path / "my-model")
    assert main(["card", "--model_dir", str(model_dir), "--copy_to", str(tmp_path / "cards")]) == 0
    copied = tmp_path / "cards" / "my-model.md"
    assert capsys.readouterr().out.strip() == str(copied)
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    pictures = sorted(path.name for path in model_dir.glob("*.png"))
    assert pictures and all(f"]({picture})" in card for picture in pictures)
    # the pictures go along, renamed for the card, so that the cards sharing the folder keep their own
    for picture in pictures:
        assert (tmp_path / "cards" / f"my-model-{picture}").read_bytes() == (model_dir / picture).read_bytes()
        card = card.replace(f"]({picture})", f"](my-model-{picture})")
    assert copied.read_text(encoding="utf-8") == card


def test_card_command_refuses_incomplete_dir(tmp_path, capsys):
    assert main(["card", "--model_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [incomplete_model_dir]: ")


@pytest.mark.parametrize("kind", ["classifier", "generator"])
def test_round_trip_through_model_card(kind, request, tmp_path):
    """render -> `ModelCard.load` -> metadata: the library reads back what it wrote, and writes it the same."""
    directory = request.getfixturevalue("lstm_dir" if kind == "classifier" else "lstm_lm_dir")
    text = render_card(directory)
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.model_name == directory.name and card.data.license == "other"
    assert read_card_metadata(text) == card.data.to_dict()
    assert write_card(card.data, card.text) == text
    saved = {"validation": json.loads((directory / "eval_results.json").read_text())}
    if kind == "classifier":
        saved["test"] = json.loads((directory / "test_results.json").read_text())
    for result in card.data.eval_results:
        key = result.metric_type if kind == "generator" else METRIC_KEYS[result.metric_type]
        assert result.metric_value == round(saved[result.dataset_split][key], 4)
    assert {result.dataset_split for result in card.data.eval_results} == set(saved)


@pytest.mark.parametrize("path", COMMITTED_CARDS, ids=lambda path: path.stem)
def test_committed_card_metadata(path):
    """Each released card reads back: its key fields, and model-index figures equal to its own tables."""
    text = path.read_text(encoding="utf-8")
    metadata = read_card_metadata(text)
    assert metadata["license"] and metadata["language"] == ["en"] and metadata["library_name"] == "transformers"
    assert metadata["datasets"] and "textsvc" in metadata["tags"]
    assert f"localhost:8000{ROUTES[metadata['pipeline_tag']]}" in text
    card = ModelCard.load(path)
    assert card.data.model_name == path.stem and card.data.eval_results
    for result in card.data.eval_results:
        assert result.task_type == metadata["pipeline_tag"]
        heading = f"### {result.dataset_split.capitalize()} ("
        section = (card.text.split(heading, 1)[1] if heading in card.text
                   else card.text.split("## Evaluation results", 1)[1]).split("\n## ", 1)[0].split("\n### ", 1)[0]
        title = result.metric_name.removesuffix(f" ({result.dataset_split})")
        row = re.search(rf"^\| {re.escape(title)} \| ([0-9.]+) \|$", section, re.MULTILINE)
        assert float(row.group(1)) == pytest.approx(result.metric_value, abs=5e-5), (path.stem, title)
    # the front matter is what the card writer writes today
    assert write_card(ModelCardData(**metadata), card.text) == text


def test_precision_section_goes_before_the_limitations_and_says_what_was_not_measured(lstm_dir, tmp_path):
    report = {"accuracy": 0.9765, "macro_f1": 0.9757, "loss": 0.2191}
    both = precision_section({"float32": report, "bfloat16": {**report, "loss": 0.2192}}, "CPU (2 threads)")
    alone = precision_section({"float32": report}, "CPU (2 threads)")
    assert "| bfloat16 | 0.9765 | 0.9757 | 0.2192 |" in both and "not measured" not in both
    assert "| bfloat16 |" not in alone and "bfloat16 not measured" in alone
    model_dir = shutil.copytree(lstm_dir, tmp_path / "my-model")
    assert "## Accuracy by serving" not in render_card(model_dir)  # only where it was measured
    (model_dir / PRECISION_RESULTS).write_text(json.dumps({"device": "CPU (2 threads)", "reports": {"float32": report}}))
    card = render_card(model_dir)  # rendered again, the section stays: it comes from the results file
    assert card.index("## Evaluation results") < card.index("## Accuracy by serving") < card.index("## Limitations")
    assert alone in card


def generator_run(dtype: str, quantize: str, int8_activations: bool, loss_per_char: float) -> dict:
    return {"dtype": dtype, "quantize": quantize, "int8_activations": int8_activations, "loss_per_char": loss_per_char,
            "num_chars": 46_000, "num_tokens": 10_500, "block_size": 1024}


PRECISION = {"device": "CPU (2 threads)", "text": "20 held-out articles",
             "runs": [generator_run("float32", "none", False, 0.8), generator_run("bfloat16", "none", False, 0.8004),
                      generator_run("bfloat16", "int4", True, 0.79)]}


def test_generator_precision_section_compares_each_setting_with_the_first(gpt_lm_dir, tmp_path):
    section = generator_card.precision_section(PRECISION)
    assert "| float32 | float32 | float32 | 0.8000 | |" in section
    assert "| bfloat16 | bfloat16 | bfloat16 | 0.8004 | +0.05% |" in section
    assert "| bfloat16 | int4 | int8 (W8A8) | 0.7900 | -1.25% |" in section
    assert "20 held-out articles (46,000 characters, 10,500 predicted tokens, windows of 1024 tokens)" in section
    assert "bfloat16 not measured" in generator_card.precision_section({**PRECISION, "runs": PRECISION["runs"][:1]})
    model_dir = shutil.copytree(gpt_lm_dir, tmp_path / "my-generator")
    assert "## Loss by serving precision" not in render_card(model_dir)
    (model_dir / PRECISION_RESULTS).write_text(json.dumps(PRECISION))
    card = render_card(model_dir)
    assert card.index("## Evaluation results") < card.index("## Loss by serving precision") < card.index("## Samples")


def test_imported_model_card_is_rendered_from_its_import_record(tmp_path, capsys):
    info = {"source_file": "tiny.Q4_1.gguf", "format": "gguf", "dtype": "float32", "hub_id": "someone/tiny",
            "architecture": "LlamaForCausalLM", "num_parameters": 1234, "license": "apache-2.0", "languages": ["en"]}
    model_dir = tmp_path / "imported"
    model_dir.mkdir()
    (model_dir / "import_info.json").write_text(json.dumps(info))
    card = render_card(model_dir)
    metadata = read_card_metadata(card)
    assert (metadata["base_model"], metadata["license"], metadata["language"]) == ("someone/tiny", "apache-2.0", ["en"])
    assert write_card(ModelCardData(**metadata), card.split("\n---\n", 1)[1]) == card
    assert "from `tiny.Q4_1.gguf` (LlamaForCausalLM, 1,234 parameters)" in card and "## Loss by" not in card
    (model_dir / PRECISION_RESULTS).write_text(json.dumps(PRECISION))
    assert render_card(model_dir).endswith(generator_card.precision_section(PRECISION))
    (model_dir / "import_info.json").unlink()
    with pytest.raises(ModelDirError, match="no training_info.json or import_info.json"):
        render_card(model_dir)
