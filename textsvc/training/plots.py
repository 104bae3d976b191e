"""Pictures for maintainers, saved beside each trained model: the training curves from `trainer_state.json`, and a
classifier's confusion matrix. Drawn on matplotlib's `Figure` directly (no pyplot): no global state, no GUI backend,
safe beside the Trainer's threads."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

CURVES_FILE, CONFUSION_FILE = "training_curves.png", "confusion_matrix.png"
LOSSES = (("loss", "training loss"), ("eval_loss", "validation loss"))


def _metric_name(history: list[dict]) -> str | None:
    """The validation metric the run logged besides its loss (accuracy first), if any."""
    names = sorted({key for entry in history for key in entry if key.startswith("eval_")
                    and key != "eval_loss" and not key.endswith(("_runtime", "_per_second"))})
    return "eval_accuracy" if "eval_accuracy" in names else (names[0] if names else None)


def save_training_curves(directory: Path, title: str | None = None) -> Path | None:
    """training_curves.png: training and validation loss, and the validation metric, against steps, titled with
    `title` (the model's name; default the folder's); None when trainer_state.json holds no logged step."""
    state = directory / "trainer_state.json"
    history = json.loads(state.read_text(encoding="utf-8")).get("log_history", []) if state.is_file() else []
    series = {key: [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
              for key, _ in LOSSES}
    if not any(series.values()):
        return None
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    for key, label in LOSSES:
        if series[key]:
            axes.plot(*zip(*series[key]), marker="." if len(series[key]) < 30 else None, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    metric = _metric_name(history)
    if metric:
        points = [(entry["step"], entry[metric]) for entry in history if metric in entry]
        other = axes.twinx()  # the metric's scale (0..1) is not the loss's
        other.plot(*zip(*points), color="tab:green", marker=".", label=metric.removeprefix("eval_"))
        other.set_ylabel(metric.removeprefix("eval_"))
        other.legend(loc="center right")
    axes.legend(loc="upper right")
    axes.set_title(f"{title or directory.name}: training curves")
    figure.tight_layout()
    figure.savefig(directory / CURVES_FILE)
    return directory / CURVES_FILE


def save_confusion_matrix(directory: Path, report: dict, split: str) -> Path:
    """confusion_matrix.png of one split's report (rows: true label, columns: predicted)."""
    names, matrix = report["confusion_matrix"]["labels"], report["confusion_matrix"]["matrix"]
    size = max(3.5, 0.6 * len(names) + 2)
    figure = Figure(figsize=(size, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true label")
    largest = max((max(row) for row in matrix), default=0)
    for row, counts in enumerate(matrix):
        for column, count in enumerate(counts):
            axes.text(column, row, str(count), ha="center", va="center",
                      color="white" if count > largest / 2 else "black")
    axes.set_title(f"{split} split")
    figure.tight_layout()
    figure.savefig(directory / CONFUSION_FILE)
    return directory / CONFUSION_FILE
