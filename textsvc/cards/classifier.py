"""Model cards: YAML front matter in the Hugging Face format, then the sections of Mitchell et al. (2019),
"Model Cards for Model Reporting", all rendered from the files saved in the model directory."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from textsvc.modeldir import read_json

ARCH_DESCRIPTIONS = {
    ("lstm", True): "an embedding + LSTM classifier trained from scratch, with a WordPiece tokenizer learnt "
                    "from the training split",
    ("transformer", True): "a small BERT-style transformer encoder trained from scratch, with a WordPiece "
                           "tokenizer learnt from the training split",
    ("transformer", False): "a pretrained transformer encoder fine-tuned with a classification head",
}
METRIC_NAMES = {"accuracy": "Accuracy", "macro_precision": "Macro precision", "macro_recall": "Macro recall",
                "macro_f1": "Macro F1"}


def render_card(model_dir: str | Path) -> str:
    """The whole `README.md` for a trained model directory (classifier or generator)."""
    directory = Path(model_dir)
    info = read_json(directory / "training_info.json")
    if info.get("task") == "text-generation":
        from textsvc.cards.generator import render_generator_card  # lm_cards imports this module's shared sections

        return render_generator_card(directory)
    results = {split: report for split in ("eval", "test")
               if (report := read_json(directory / f"{split}_results.json")) is not None}
    sections = [front_matter(info, results), f"# {info['name']}\n", model_details(info), intended_use(info),
                training_data(info), training_procedure(info), evaluation(info, results), limitations(info, results),
                service_usage(info), framework_versions(info)]
    return "\n".join(sections)


def front_matter(info: dict, results: dict) -> str:
    """YAML metadata the hub and `GET /models/<name>/card` read: licence, data, metrics, `model-index`."""
    split_names = {"eval": "validation", "test": "test"}
    index_results = [{
        "task": {"type": "text-classification", "name": "Text Classification"},
        "dataset": {"name": _split_source(info, split_names[split]), "type": info["dataset"],
                    "split": split_names[split]},
        "metrics": [{"type": "accuracy" if key == "accuracy" else key.replace("macro_", ""),
                     "value": round(report[key], 4), "name": f"{METRIC_NAMES[key]} ({split_names[split]})",
                     **({"args": {"average": "macro"}} if key != "accuracy" else {})}
                    for key in METRIC_NAMES],
    } for split, report in results.items()]
    metadata = {
        "license": info["license"], "language": [info["language"]], "library_name": "transformers",
        "pipeline_tag": "text-classification", "tags": ["textsvc", f"textsvc-{info['arch']}"],
        "datasets": [info["dataset"]], "metrics": ["accuracy", "precision", "recall", "f1"],
        **({"base_model": info["base_model"]} if info.get("base_model") else {}),
        "model-index": [{"name": info["name"], "results": index_results}],
    }
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n"


def _split_source(info: dict, split: str) -> str:
    """"sst2 (dev.tsv)" for local files, the hub name otherwise."""
    files = info.get("dataset_files") or {}
    file = files.get(split) or (files.get("train") if split == "validation" else None)
    return f"{info['dataset']} ({file})" if file else info["dataset"]


def model_details(info: dict) -> str:
    description = ARCH_DESCRIPTIONS[(info["arch"], info["from_scratch"])]
    pooling = info.get("hyperparameters", {}).get("classifier_pooling")
    if pooling:
        description += (" that reads the mean of the token states (the pooling the encoder was pretrained with)"
                        if pooling == "mean" else " that reads the [CLS] token's state")
    base = f" Base model: `{info['base_model']}`." if info.get("base_model") else ""
    if info.get("distillation"):
        distillation = info["distillation"]
        start = ("Its weights start from random values; it learnt from the labels and" if info["from_scratch"]
                 else "Fine-tuning learnt from the labels and also")
        teachers = [f"`{t['name']}`" + (f" (fine-tuned from `{t['base_model']}`)" if t.get("base_model") else "")
                    for t in distillation.get("teachers") or [  # models trained before ensembles had one teacher
                        {"name": distillation["teacher"], "base_model": distillation.get("teacher_base_model")}]]
        source = (f"the logits of the teacher classifier {teachers[0]}" if len(teachers) == 1 else
                  f"the averaged log-probabilities of an ensemble of {len(teachers)} teacher classifiers, "
                  + ", ".join(teachers))
        labellers = "teacher" if len(teachers) == 1 else "teachers"
        base += (f" {start} from {source} by knowledge distillation"
                 + (f", on the training data plus {distillation['transfer_examples']:,} unlabelled texts from "
                    f"`{distillation['transfer_file']}` that the {labellers} labelled"
                    if distillation.get("transfer_file") else "") + ".")
    return (f"## Model details\n\n`{info['name']}` is {description}, made with textsvc "
            f"{info['framework_versions']['textsvc']}.{base} It has {info['num_parameters']:,} parameters and "
            f"predicts one of {len(info['labels'])} labels: {', '.join(f'`{l}`' for l in info['labels'])}. "
            f"Licence: {info['license']}. Card generated on {datetime.date.today().isoformat()}.\n")


def intended_use(info: dict) -> str:
    return (f"## Intended use\n\nAssigning one of the labels above to short {info['language']} texts of the kind "
            f"found in `{info['dataset']}`, through the textsvc `/classify` route or transformers. Scores are "
            "softmax probabilities over the labels.\n\n## Out-of-scope use\n\nText in other languages or from "
            "other domains than the training data, labels outside the set above, and decisions about people "
            "made without human review. Texts longer than "
            f"{info['hyperparameters']['max_seq_length']} tokens were never seen in training.\n")


def training_data(info: dict) -> str:
    labels = info["labels"]
    rows = ["| split | examples | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for split, size in info["split_sizes"].items():
        counts = info["label_counts"][split]
        rows.append(f"| {split} | {size:,} | " + " | ".join(f"{counts[l]:,}" for l in labels) + " |")
    carved = ("The validation split was held out from the training file (seeded, stratified by label).\n"
              if info["validation_carved_from_train"] else "")
    files = info.get("dataset_files") or {}
    listed = "; ".join(f"{split}: `{name}`" for split, name in files.items())
    described = f" {info['dataset_description']}" if info.get("dataset_description") else ""
    source = f"Source: `{info['dataset']}`" + (f" ({listed})" if listed else "") + f".{described}"
    return f"## Training data\n\n{source}\n\n" + "\n".join(rows) + "\n\n" + carved


def training_procedure(info: dict) -> str:
    rows = ["| hyperparameter | value |", "|---|---|"]
    rows += [f"| {key} | {value} |" for key, value in info["hyperparameters"].items()]
    runtime = info["train_metrics"].get("train_runtime")
    timing = f"Training took {runtime:.0f} s" if runtime is not None else "Training time was not recorded"
    how = "Fine-tuned" if not info["from_scratch"] else "Trained from random initialisation"
    teacher = info.get("distillation")
    distilled = (f" The training loss was {teacher['alpha']} x cross-entropy on the labels + {1 - teacher['alpha']:g} x "
                 f"the KL divergence to the teacher's softened predictions at temperature {teacher['temperature']} "
                 "(Hinton et al. 2015), scaled by the temperature squared." if teacher else "")
    return (f"## Training procedure\n\n{how} with the Hugging Face `Trainer`: AdamW with weight decay, linear "
            "warm-up then decay, evaluation after every epoch, early stopping on validation accuracy, and the "
            "best checkpoint kept." + distilled + "\n\n" + "\n".join(rows) +
            f"\n\n{timing} ({info['wall_seconds']:.0f} s wall time including data preparation) on "
            f"{info['hardware']}.\n")


def evaluation(info: dict, results: dict) -> str:
    parts = ["## Evaluation results\n"]
    titles = {"eval": "Validation", "test": "Test"}
    for split, report in results.items():
        parts.append(f"### {titles[split]} ({report['num_samples']:,} examples)\n")
        parts.append("| metric | value |\n|---|---|\n" + "\n".join(
            f"| {METRIC_NAMES[key]} | {report[key]:.4f} |" for key in METRIC_NAMES) +
            f"\n| Loss | {report['loss']:.4f} |\n")
        parts.append("| label | precision | recall | F1 | support |\n|---|---|---|---|---|\n" + "\n".join(
            f"| {label} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
            for label, m in report["per_class"].items()) + "\n")
        names = report["confusion_matrix"]["labels"]
        matrix = report["confusion_matrix"]["matrix"]
        parts.append("Confusion matrix (rows: true label, columns: predicted):\n\n| | " + " | ".join(names) +
                     " |\n|---|" + "---|" * len(names) + "\n" +
                     "\n".join(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |"
                               for name, row in zip(names, matrix)) + "\n")
    return "\n".join(parts)


def limitations(info: dict, results: dict) -> str:
    points = []
    train_counts = info["label_counts"]["train"]
    largest, smallest = max(train_counts.values()), max(min(train_counts.values()), 1)
    if largest / smallest >= 1.5:
        points.append(f"The training labels are imbalanced ({largest:,} vs {smallest:,} examples for the most and "
                      "least frequent label), which pulls predictions towards the frequent labels.")
    report = results.get("test") or results.get("eval")
    if report:
        worst = min(report["per_class"].items(), key=lambda item: item[1]["f1"])
        points.append(f"The weakest label is `{worst[0]}` (F1 {worst[1]['f1']:.3f} on the "
                      f"{'test' if 'test' in results else 'validation'} split).")
    if info.get("distillation"):
        points.append("As a distilled model it inherits the teacher's mistakes and biases on top of its own.")
    if info["from_scratch"]:
        points.append("The vocabulary was learnt from the training split alone, lower-cased: words absent from it "
                      "are split into pieces the model has seldom seen, and case carries no signal.")
    else:
        points.append("The pretrained encoder carries the biases of its pre-training text, which this fine-tuning "
                      "does not measure or remove.")
    points.append("The model reflects the labelling conventions and the demographic and topical make-up of its "
                  "training data; no fairness evaluation across groups of people was made.")
    return "## Limitations and biases\n\n" + "\n".join(f"- {p}" for p in points) + "\n"


def service_usage(info: dict) -> str:
    request = json.dumps({"inputs": "an example text", "model": info["name"]})
    return ("## How to use\n\nThrough the textsvc service:\n\n```bash\n"
            f"curl -s localhost:8000/classify -H 'Content-Type: application/json' -d '{request}'\n```\n\n"
            "With transformers (textsvc registers its architectures on import):\n\n```python\nimport textsvc\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f"model = AutoModelForSequenceClassification.from_pretrained(\"{info['name']}\")\n"
            f"tokenizer = AutoTokenizer.from_pretrained(\"{info['name']}\")\n```\n")


def framework_versions(info: dict) -> str:
    return "## Framework versions\n\n" + "\n".join(
        f"- {name}: {version}" for name, version in info["framework_versions"].items()) + "\n"


def read_card_metadata(card_text: str) -> dict:
    """The YAML front matter of a card, as a dict (empty when the card has none)."""
    if not card_text.startswith("---\n"):
        return {}
    end = card_text.find("\n---\n", 4)
    return yaml.safe_load(card_text[4:end]) or {} if end != -1 else {}
