"""The classifier's model card: the sections of Mitchell et al. (2019), "Model Cards for Model Reporting",
rendered from the files a classifier's training run saves in its model directory."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from textsvc.cards import common
from textsvc.modeldir import read_json

TASK = "text-classification"
ARCH_DESCRIPTIONS = {
    ("lstm", True): "an embedding + LSTM classifier trained from scratch, with a WordPiece tokenizer learnt "
                    "from the training split",
    ("transformer", True): "a small BERT-style transformer encoder trained from scratch, with a WordPiece "
                           "tokenizer learnt from the training split",
    ("transformer", False): "a pretrained transformer encoder fine-tuned with a classification head",
}
METRIC_NAMES = {"accuracy": "Accuracy", "macro_precision": "Macro precision", "macro_recall": "Macro recall",
                "macro_f1": "Macro F1"}
SELECTION_NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1", "loss": "loss"}  # --metric_for_best_model
SPLIT_NAMES = {"eval": "validation", "test": "test"}  # results file prefix -> the split's name on the hub


def render_classifier_card(directory: Path, info: dict) -> str:
    """The whole `README.md` for a trained classifier directory, given its `training_info.json`."""
    results = {split: report for split in SPLIT_NAMES
               if (report := read_json(directory / f"{split}_results.json")) is not None}
    precision = read_json(directory / common.PRECISION_RESULTS)
    return common.join_sections(front_matter(info, results), [
        model_details(info), intended_use(info), training_data(info),
        training_procedure(info) + common.picture(directory, *common.CURVES),
        evaluation(results, info.get("refit")) + common.picture(directory, *common.CONFUSION),
        *([precision_section(precision["reports"], precision["device"])] if precision else []),
        limitations(info, results), service_usage(info), common.framework_versions(info)])


def front_matter(info: dict, results: dict) -> ModelCardData:
    """Licence, data, base model, and each split's accuracy and macro precision, recall and F1 in `model-index`."""
    measured = [result for split, report in results.items() for result in split_results(info, split, report)]
    return common.card_data(info, TASK, ["accuracy", "precision", "recall", "f1"], measured)


def split_results(info: dict, split: str, report: dict) -> list[EvalResult]:
    """The `model-index` entries of one split: accuracy, then the macro averages."""
    name = SPLIT_NAMES[split]
    metrics = [{"metric_type": "accuracy" if key == "accuracy" else key.replace("macro_", ""),
                "metric_value": round(report[key], 4), "metric_name": f"{title} ({name})",
                "metric_args": None if key == "accuracy" else {"average": "macro"}}
               for key, title in METRIC_NAMES.items()]
    return common.eval_results(TASK, info["dataset"], name, metrics, dataset_name=_split_source(info, name))


def _split_source(info: dict, split: str) -> str:
    """"sst2 (dev.tsv)" for local files, the hub name otherwise."""
    files = info.get("dataset_files") or {}
    file = files.get(split) or (files.get("train") if split == "validation" else None)
    return f"{info['dataset']} ({file})" if file else info["dataset"]


def model_details(info: dict) -> str:
    """What the classifier is (architecture, pooling, teachers), its size and its labels."""
    description = _embedding_description(info) or ARCH_DESCRIPTIONS[(info["arch"], info["from_scratch"])]
    hyperparameters = info.get("hyperparameters", {})
    pooling = hyperparameters.get("classifier_pooling")
    if pooling:
        description += (" that reads the mean of the token states (the pooling the encoder was pretrained with)"
                        if pooling == "mean" else " that reads the [CLS] token's state")
    if hyperparameters.get("bag_of_words"):
        buckets = hyperparameters.get("word_pair_buckets")
        pairs = f" and of its word pairs (hashed into {buckets:,} buckets)" if buckets else ""
        dropout = hyperparameters.get("bag_of_words_dropout")
        left_out = (f"; left out for a random {dropout:.0%} of the training texts, so that the LSTM also learnt to "
                    "decide alone" if dropout else "")
        description += (f", beside a linear model of the text's bag of words{pairs} whose logits are added to the "
                        f"LSTM's (the wide part of wide & deep, Cheng et al. 2016{left_out})")
    labels = ", ".join(f"`{label}`" for label in info["labels"])
    return common.model_details(info, description, f"predicts one of {len(info['labels'])} labels: {labels}",
                                _distillation(info))


def _embedding_description(info: dict) -> str | None:
    """What an LSTM whose word embeddings started from a pretrained model is, naming that model."""
    embeddings = info.get("embedding_init")
    if not embeddings:
        return None
    how = "kept frozen" if embeddings["frozen"] else "fine-tuned with the rest"
    return (f"an embedding + LSTM classifier whose word embeddings ({embeddings['vocab_size']:,} x "
            f"{embeddings['embedding_dim']}) started from the input embeddings of `{embeddings['source']}` and were "
            f"{how} (it reads text with that model's tokenizer)")


def _distillation(info: dict) -> str:
    """" ... from the logits of the teacher classifier `x` by knowledge distillation ..." for a distilled model."""
    distillation = info.get("distillation")
    if not distillation:
        return ""
    weights = "Its weights other than the pretrained word embeddings" if info.get("embedding_init") else "Its weights"
    start = (f"{weights} start from random values; it learnt from the labels and" if info["from_scratch"]
             else "Fine-tuning learnt from the labels and also")
    teachers = [f"`{t['name']}`" + (f" (fine-tuned from `{t['base_model']}`)" if t.get("base_model") else "")
                for t in distillation.get("teachers") or [  # models trained before ensembles had one teacher
                    {"name": distillation["teacher"], "base_model": distillation.get("teacher_base_model")}]]
    source = (f"the logits of the teacher classifier {teachers[0]}" if len(teachers) == 1 else
              f"the averaged log-probabilities of an ensemble of {len(teachers)} teacher classifiers, "
              + ", ".join(teachers))
    labellers = "teacher" if len(teachers) == 1 else "teachers"
    return (f" {start} from {source} by knowledge distillation"
            + (f", on the training data plus {distillation['transfer_examples']:,} unlabelled texts from "
               f"`{distillation['transfer_file']}` that the {labellers} labelled"
               if distillation.get("transfer_file") else "") + ".")


def intended_use(info: dict) -> str:
    """Short texts like the training data, through `/classify` or transformers; not decisions about people."""
    return common.intended_use(
        f"Assigning one of the labels above to short {info['language']} texts of the kind found in "
        f"`{info['dataset']}`, through the textsvc `/classify` route or transformers. Scores are softmax "
        "probabilities over the labels.",
        "Text in other languages or from other domains than the training data, labels outside the set above, and "
        "decisions about people made without human review. Texts longer than "
        f"{info['hyperparameters']['max_seq_length']} tokens were never seen in training.")


def training_data(info: dict) -> str:
    """The source, and examples per split and label."""
    labels = info["labels"]
    rows = [[split, f"{size:,}", *(f"{info['label_counts'][split][label]:,}" for label in labels)]
            for split, size in info["split_sizes"].items()]
    carved = ("The validation split was held out from the training file (seeded, stratified by label).\n"
              if info["validation_carved_from_train"] else "")
    described = f" {info['dataset_description']}" if info.get("dataset_description") else ""
    return (f"## Training data\n\n{common.data_source(info)}.{described}\n\n"
            + common.table(["split", "examples", *labels], rows) + "\n\n" + carved)


def training_procedure(info: dict) -> str:
    """The optimiser and schedule, the distillation loss when there was one, the hyperparameters."""
    teacher = info.get("distillation")
    distilled = (f" The training loss was {teacher['alpha']} x cross-entropy on the labels + {1 - teacher['alpha']:g} x "
                 f"the KL divergence to the teacher's softened predictions at temperature {teacher['temperature']} "
                 "(Hinton et al. 2015), scaled by the temperature squared." if teacher else "")
    selected_on = SELECTION_NAMES[next(iter(info.get("best_checkpoint_metric") or {"accuracy": None}))]
    return common.training_procedure(info, ": AdamW with weight decay, linear warm-up then decay, evaluation after "
                                           f"every epoch, early stopping on validation {selected_on}, and the best "
                                           "checkpoint kept." + distilled + _adversarial(info)
                                           + _lm_pretraining(info) + _refit(info))


def _refit(info: dict) -> str:
    """" Validation then chose epoch E; the model was trained again ..." for a model refit on its validation rows."""
    refit = info.get("refit")
    if not refit:
        return ""
    return (f" Validation chose epoch {refit['epochs']:g}; the model was then trained again from the same initial "
            f"weights on the training and validation rows together ({refit['train_rows']:,} examples), on the same "
            f"schedule, up to the end of that epoch, and that is the model saved (a refit). The curves and the table "
            f"below are the selection run's.")


def _adversarial(info: dict) -> str:
    """" Each step also trained on ... perturbed ..." for a model trained adversarially."""
    epsilon = info.get("hyperparameters", {}).get("adversarial_epsilon")
    if not epsilon:
        return ""
    return (" Each step also trained on the same texts with their word embeddings moved by the perturbation of L2 "
            f"norm {epsilon:g} per text that raised the loss most, to first order (adversarial training, Miyato et "
            "al. 2017).")


def _lm_pretraining(info: dict) -> str:
    """" Before fine-tuning, the embeddings and LSTM were trained as a language model ..." when they were."""
    record = info.get("lm_pretraining")
    if not record:
        return ""
    if "steps" not in record:  # a resumed run whose record was lost
        return f" Before fine-tuning, the LSTM was pre-trained as a language model for {record['epochs']:g} epochs."
    frozen = " (the embeddings stayed frozen)" if (info.get("embedding_init") or {}).get("frozen") else ""
    layers = ("" if record["pretrained_layers"] == record["num_layers"] else
              f" Of its {record['num_layers']} layers only its first layer was pre-trained: the layers above read "
              "both directions' states, so they would see the token they predict; they started at random.")
    return (f" Before fine-tuning, the embeddings and LSTM{frozen} were trained as a language model on the "
            f"{record['texts']:,} training texts for {record['epochs']:g} epochs ({record['steps']:,} steps; Dai & "
            f"Le 2015, \"Semi-supervised Sequence Learning\"): {record['directions']}, over a softmax of the "
            f"{record['output_vocabulary']:,} tokens that occur in those texts. Its loss on the validation texts "
            f"went from {record['validation_loss_before']:.3f} to {record['validation_loss_after']:.3f} nats per "
            f"token; that output layer was then dropped and the classification head trained from the new "
            f"weights.{layers}")


def evaluation(results: dict, refit: dict | None = None) -> str:
    """Per split: the summary metrics, the per-label figures and the confusion matrix. After a refit the validation
    figures are the selection run's model's, as the saved one trained on those rows."""
    parts = ["## Evaluation results\n"]
    titles = {"eval": "Validation", "test": "Test"}
    for split, report in results.items():
        parts.append(f"### {titles[split]} ({report['num_samples']:,} examples)\n")
        if refit and split == "eval":
            parts.append("Of the selection run's model, before the refit, which then trained on these rows: they "
                         "chose the epoch, and do not measure the saved model.\n")
        if refit and split == "test" and refit.get("selection_run_test"):
            before = refit["selection_run_test"]
            parts.append(f"Of the saved (refit) model. The selection run's model scored {before['accuracy']:.4f} "
                         f"accuracy and {before['macro_f1']:.4f} macro F1 on the same rows.\n")
        summary = [[title, f"{report[key]:.4f}"] for key, title in METRIC_NAMES.items()]
        parts.append(common.table(["metric", "value"], [*summary, ["Loss", f"{report['loss']:.4f}"]]) + "\n")
        parts.append(common.table(["label", "precision", "recall", "F1", "support"], [
            [label, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]]
            for label, m in report["per_class"].items()]) + "\n")
        names = report["confusion_matrix"]["labels"]
        matrix = report["confusion_matrix"]["matrix"]
        parts.append("Confusion matrix (rows: true label, columns: predicted):\n\n" + common.table(
            ["", *names], [[f"**{name}**", *row] for name, row in zip(names, matrix)]) + "\n")
    return "\n".join(parts)


def precision_section(reports: dict[str, dict], device: str) -> str:
    """How accuracy moves with the dtype `textsvc serve` runs the model in: `reports` maps a dtype to its test
    report (`evaluate_classifier`), measured on `device`."""
    rows = [[dtype, f"{report['accuracy']:.4f}", f"{report['macro_f1']:.4f}", f"{report['loss']:.4f}"]
            for dtype, report in reports.items()]
    unmeasured = "" if "bfloat16" in reports else common.BF16_UNMEASURED
    return (f"## Accuracy by serving precision\n\n{common.AUTO_DTYPE} The test split at the serving input limit, on "
            f"{device}{unmeasured}:\n\n"
            + common.table(["dtype", "accuracy", "macro F1", "loss"], rows) + "\n")


def limitations(info: dict, results: dict) -> str:
    """Label imbalance, the weakest label, and what distillation or the vocabulary bring."""
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
    if info.get("embedding_init"):
        points.append(f"The vocabulary and the starting word embeddings come from `{info['embedding_init']['source']}`"
                      ": they carry the biases of its pre-training text, which this training does not measure or "
                      "remove.")
    elif info["from_scratch"]:
        points.append("The vocabulary was learnt from the training split alone, lower-cased: words absent from it "
                      "are split into pieces the model has seldom seen, and case carries no signal.")
    else:
        points.append("The pretrained encoder carries the biases of its pre-training text, which this fine-tuning "
                      "does not measure or remove.")
    points.append("The model reflects the labelling conventions and the demographic and topical make-up of its "
                  "training data; no fairness evaluation across groups of people was made.")
    return common.limitations(points)


def service_usage(info: dict) -> str:
    """`/classify` with curl, and loading with the transformers Auto classes."""
    return common.service_usage("classify", {"inputs": "an example text", "model": info["name"]}, (
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f"model = AutoModelForSequenceClassification.from_pretrained(\"{info['name']}\")\n"
        f"tokenizer = AutoTokenizer.from_pretrained(\"{info['name']}\")\n"))
