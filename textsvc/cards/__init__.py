"""Model cards, rendered from the files a training run saves in the model directory, per model kind: the shared
half (front matter through `huggingface_hub`, tables, common sections) in `common`, each kind's sections beside it."""

from __future__ import annotations

from pathlib import Path

from textsvc.cards.classifier import render_classifier_card
from textsvc.cards.generator import render_generator_card
from textsvc.modeldir import read_json


def render_card(model_dir: str | Path) -> str:
    """The whole `README.md` for a trained model directory, classifier or generator."""
    directory = Path(model_dir)
    info = read_json(directory / "training_info.json")
    render = render_generator_card if info.get("task") == "text-generation" else render_classifier_card
    return render(directory, info)
