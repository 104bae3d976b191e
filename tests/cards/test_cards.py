"""Model cards: front matter that matches the saved results, every section, no placeholders."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from textsvc.cards.classifier import read_card_metadata
from textsvc.cli import main

SECTIONS = ("Model details", "Intended use", "Out-of-scope use", "Training data", "Training procedure",
            "Evaluation results", "Limitations and biases", "How to use", "Framework versions")
METRIC_KEYS = {"accuracy": "accuracy", "precision": "macro_precision", "recall": "macro_recall", "f1": "macro_f1"}


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


def test_card_command_copies_card(lstm_dir, tmp_path, capsys):
    model_dir = shutil.copytree(lstm_dir, tmp_path / "my-model")
    assert main(["card", "--model_dir", str(model_dir), "--copy_to", str(tmp_path / "cards")]) == 0
    copied = tmp_path / "cards" / "my-model.md"
    assert capsys.readouterr().out.strip() == str(copied)
    assert copied.read_text(encoding="utf-8") == (model_dir / "README.md").read_text(encoding="utf-8")


def test_card_command_refuses_incomplete_dir(tmp_path, capsys):
    assert main(["card", "--model_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [incomplete_model_dir]: ")
