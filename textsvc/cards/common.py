"""The half of a model card both model kinds share: YAML front matter through `huggingface_hub`'s card classes,
markdown tables, and the sections whose wording is the same for classifiers and generators."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TASK_NAMES = {"text-classification": "Text Classification", "text-generation": "Text Generation"}
PRECISION_RESULTS = "precision_results.json"  # held-out figures by serving precision, where measured (default_models)
AUTO_DTYPE = ("`textsvc serve --dtype auto` runs this model in bfloat16 on GPUs that have it and on CPUs with AVX-512 "
              "BF16 or AMX, else in float32.")
BF16_UNMEASURED = " (bfloat16 not measured: this device has no bf16 instructions)"  # after a precision section's device
# The library writes the YAML block from `card_data`; the body is passed as a value, so jinja never parses it.
CARD_TEMPLATE = "---\n{{ card_data }}\n---\n{{ body }}"


def card_data(info: dict, task: str, metrics: list[str], eval_results: list[EvalResult],
              extra_tags: Sequence[str] = ()) -> ModelCardData:
    """The front matter the hub and `GET /models/<name>/card` read: licence, data, metrics, `model-index`."""
    return ModelCardData(
        license=info["license"], language=[info["language"]], library_name="transformers", pipeline_tag=task,
        tags=["textsvc", f"textsvc-{info['arch']}", *extra_tags], datasets=[info["dataset"]], metrics=metrics,
        base_model=info.get("base_model") or None, model_name=info["name"], eval_results=eval_results)


def eval_results(task: str, dataset: str, split: str, metrics: list[dict], dataset_name: str | None = None
                 ) -> list[EvalResult]:
    """One `EvalResult` per measured metric (`metric_type`, `metric_value`, ...) of one split, for `model-index`."""
    return [EvalResult(task_type=task, task_name=TASK_NAMES[task], dataset_type=dataset,
                       dataset_name=dataset_name or dataset, dataset_split=split, **metric) for metric in metrics]


def write_card(data: ModelCardData, body: str) -> str:
    """The card's markdown: the front matter written by `huggingface_hub`, then `body`."""
    return str(ModelCard.from_template(data, template_str=CARD_TEMPLATE, body=body))


def join_sections(data: ModelCardData, sections: list[str]) -> str:
    """The card's markdown: the front matter, the title, then the sections, a blank line apart."""
    return write_card(data, "\n" + "\n".join([f"# {data.model_name}\n", *sections]))


def read_card_metadata(card_text: str) -> dict:
    """The YAML front matter of a card, as a dict (empty when the card has none)."""
    # A card from elsewhere with a malformed `model-index` loses that key instead of failing the request.
    return ModelCard(card_text, ignore_metadata_errors=True).data.to_dict()


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, without a trailing newline."""
    def line(cells: Sequence[object]) -> str:  # an empty cell is written `| |`, as the released cards have it
        return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def model_details(info: dict, description: str, abilities: str, origin: str = "") -> str:
    """`Model details`: what the model is, how it was made, its size, what it does, its licence."""
    base = f" Base model: `{info['base_model']}`." if info.get("base_model") else ""
    return (f"## Model details\n\n`{info['name']}` is {description}, made with textsvc "
            f"{info['framework_versions']['textsvc']}.{base}{origin} It has {info['num_parameters']:,} parameters and "
            f"{abilities}. Licence: {info['license']}. Card generated on {datetime.date.today().isoformat()}.\n")


def intended_use(use: str, out_of_scope: str) -> str:
    """`Intended use` and `Out-of-scope use`."""
    return f"## Intended use\n\n{use}\n\n## Out-of-scope use\n\n{out_of_scope}\n"


def data_source(info: dict) -> str:
    """"Source: `sst2` (train: `train.tsv`; ...)", the files listed when the data came from local files."""
    files = info.get("dataset_files") or {}
    listed = " (" + "; ".join(f"{split}: `{name}`" for split, name in files.items()) + ")" if files else ""
    return f"Source: `{info['dataset']}`{listed}"


def training_procedure(info: dict, method: str, note: str = "") -> str:
    """`Training procedure`: how the `Trainer` ran (`method`), the hyperparameters, time and hardware."""
    hyperparameters = table(["hyperparameter", "value"], list(info["hyperparameters"].items()))
    runtime = info["train_metrics"].get("train_runtime")
    timing = f"Training took {runtime:.0f} s" if runtime is not None else "Training time was not recorded"
    how = ("Fine-tuned" if not info["from_scratch"] else
           "Trained from the pretrained word embeddings and otherwise random initialisation"
           if info.get("embedding_init") else "Trained from random initialisation")
    return (f"## Training procedure\n\n{how} with the Hugging Face `Trainer`{method}\n\n{hyperparameters}\n\n"
            f"{timing} ({info['wall_seconds']:.0f} s wall time including data preparation) on "
            f"{info['hardware']}.{note}\n")


def limitations(points: list[str]) -> str:
    """`Limitations and biases`, one bullet a point."""
    return "## Limitations and biases\n\n" + "\n".join(f"- {point}" for point in points) + "\n"


def service_usage(route: str, request: dict, python: str) -> str:
    """`How to use`: a curl call to the textsvc route, then the `python` lines that load the model."""
    return ("## How to use\n\nThrough the textsvc service:\n\n```bash\n"
            f"curl -s localhost:8000/{route} -H 'Content-Type: application/json' -d '{json.dumps(request)}'\n"
            "```\n\nWith transformers (textsvc registers its architectures on import):\n\n```python\nimport textsvc\n"
            f"{python}```\n")


def framework_versions(info: dict) -> str:
    """`Framework versions`: the packages the model was trained with."""
    return "## Framework versions\n\n" + "\n".join(
        f"- {name}: {version}" for name, version in info["framework_versions"].items()) + "\n"


CURVES = "training_curves.png", "Training and validation loss, and the validation metric, against steps"
CONFUSION = "confusion_matrix.png", "Confusion matrix (rows: true label, columns: predicted)"


def picture(directory: Path, file: str, caption: str) -> str:
    """A markdown image of a file beside the card (a relative link, as the hub shows it), or '' when absent."""
    return f"\n![{caption}]({file})\n" if (directory / file).is_file() else ""
