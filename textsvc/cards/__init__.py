"""Model cards, rendered from the files a training run saves in the model directory, per model kind: the shared
half (front matter through `huggingface_hub`, tables, common sections) in `common`, each kind's sections beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from textsvc.cards.classifier import render_classifier_card
from textsvc.cards.generator import render_generator_card
from textsvc.cards.imported import render_imported_card
from textsvc.errors import ErrorCode, ModelDirError
from textsvc.gguf_import import IMPORT_INFO
from textsvc.modeldir import read_json


def render_card(model_dir: str | Path) -> str:
    """The whole `README.md` for a model directory that textsvc trained (classifier or generator) or imported."""
    directory = Path(model_dir)
    info = read_json(directory / "training_info.json")
    if info is None:
        imported = read_json(directory / IMPORT_INFO)
        if imported is None:
            raise ModelDirError(f"{directory}: no training_info.json or {IMPORT_INFO}, so no card to render (textsvc "
                                "renders the cards of the models it trained or imported)",
                                code=ErrorCode.INCOMPLETE_MODEL_DIR)
        return render_imported_card(directory, imported)
    render = render_generator_card if info.get("task") == "text-generation" else render_classifier_card
    return render(directory, info)


def publish_card(model_dir: str | Path, folder: str | Path, name: str | None = None) -> Path:
    """Copy a model directory's card to `folder/<name>.md` (the repository's model_cards/, say; `name` defaults to
    the directory's), with its pictures renamed `<name>-<picture>` so that cards sharing the folder keep their own."""
    directory, folder = Path(model_dir), Path(folder)
    name = name or directory.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    card = (directory / "README.md").read_text(encoding="utf-8")
    for picture in sorted(directory.glob("*.png")):
        shutil.copyfile(picture, folder / f"{name}-{picture.name}")
        card = card.replace(f"]({picture.name})", f"]({name}-{picture.name})")
    target = folder / f"{name}.md"
    target.write_text(card, encoding="utf-8")
    return target
