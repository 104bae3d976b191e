"""Model cards for text generators: the classifier card's layout, with loss, perplexity, loss per character and
real samples, all rendered from the files saved in the model directory."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from textsvc.cards.classifier import framework_versions
from textsvc.modeldir import read_json

ARCH_DESCRIPTIONS = {
    ("lstm", True): "an embedding + LSTM language model with tied input and output embeddings, trained from scratch",
    ("transformer", True): "a GPT-2-style transformer decoder trained from scratch",
    ("transformer", False): "a pretrained causal language model fine-tuned on new text",
}
TOKENIZERS = {"bpe": "a byte-level BPE tokenizer learnt from the training text",
              "char": "a character-level tokenizer (one token per character of the training text)",
              "pretrained": "the pretrained model's own tokenizer"}
METRICS = (("loss", "Loss (nats per token)"), ("perplexity", "Perplexity"),
           ("loss_per_char", "Loss per character (nats)"), ("bits_per_char", "Bits per character"))


def render_generator_card(model_dir: str | Path) -> str:
    """The whole `README.md` for a trained generator directory."""
    directory = Path(model_dir)
    info = read_json(directory / "training_info.json")
    results = read_json(directory / "eval_results.json")
    samples = (read_json(directory / "samples.json") or {}).get("samples", [])
    sections = [front_matter(info, results), f"# {info['name']}\n", model_details(info), intended_use(info),
                training_data(info), training_procedure(info), evaluation(info, results), sample_section(samples),
                limitations(info), service_usage(info), framework_versions(info)]
    return "\n".join(sections)


def front_matter(info: dict, results: dict) -> str:
    """YAML metadata: licence, data, base model, and the validation figures in `model-index`."""
    metrics = [{"type": key, "value": round(results[key], 4), "name": f"{name} (validation)"} for key, name in METRICS]
    metadata = {
        "license": info["license"], "language": [info["language"]], "library_name": "transformers",
        "pipeline_tag": "text-generation", "tags": ["textsvc", f"textsvc-{info['arch']}", "text-generation"],
        "datasets": [info["dataset"]], "metrics": ["perplexity"],
        **({"base_model": info["base_model"]} if info.get("base_model") else {}),
        "model-index": [{"name": info["name"], "results": [{
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": {"name": info["dataset"], "type": info["dataset"], "split": "validation"},
            "metrics": metrics}]}],
    }
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n"


def model_details(info: dict) -> str:
    description = ARCH_DESCRIPTIONS[(info["arch"], info["from_scratch"])]
    base = f" Base model: `{info['base_model']}`." if info.get("base_model") else ""
    return (f"## Model details\n\n`{info['name']}` is {description}, made with textsvc "
            f"{info['framework_versions']['textsvc']}.{base} It has {info['num_parameters']:,} parameters and reads "
            f"text through {TOKENIZERS[info['tokenizer']]} ({info['vocab_size']:,} tokens). Licence: "
            f"{info['license']}. Card generated on {datetime.date.today().isoformat()}.\n")


def intended_use(info: dict) -> str:
    return (f"## Intended use\n\nContinuing {info['language']} text in the style of `{info['dataset']}`, through "
            "the textsvc generation route or transformers; a small model for experiments, teaching and "
            "benchmarks.\n\n## Out-of-scope use\n\nAnything that needs true or safe text: the model invents freely, "
            "has no notion of facts, and was not trained to follow instructions or refuse harmful requests. Its "
            f"training examples were {info['hyperparameters']['block_size']} tokens long; it has never seen longer "
            "contexts.\n")


def training_data(info: dict) -> str:
    rows = ["| split | documents | characters | tokens |", "|---|---|---|---|"]
    rows += [f"| {split} | {s['documents']:,} | {s['chars']:,} | {s['tokens']:,} |"
             for split, s in info["split_sizes"].items()]
    files = info.get("dataset_files") or {}
    listed = " (" + "; ".join(f"{split}: `{name}`" for split, name in files.items()) + ")" if files else ""
    carved = f"The validation text is {info['validation_carved']}.\n" if info.get("validation_carved") else ""
    return (f"## Training data\n\nSource: `{info['dataset']}`{listed}. Each document is followed by an end-of-text "
            "token and the training text is packed into blocks.\n\n" + "\n".join(rows) + "\n\n" + carved)


def training_procedure(info: dict) -> str:
    rows = ["| hyperparameter | value |", "|---|---|"]
    rows += [f"| {key} | {value} |" for key, value in info["hyperparameters"].items()]
    runtime = info["train_metrics"].get("train_runtime")
    timing = f"Training took {runtime:.0f} s" if runtime is not None else "Training time was not recorded"
    stopped = (" Training was stopped by its wall-clock budget (`max_minutes`)." if info.get("stopped_by_time_budget")
               else "")
    how = "Fine-tuned" if not info["from_scratch"] else "Trained from random initialisation"
    return (f"## Training procedure\n\n{how} with the Hugging Face `Trainer` on next-token prediction: AdamW with "
            "weight decay, warm-up then decay, validation loss measured at every evaluation, and the checkpoint "
            "with the lowest validation loss kept.\n\n" + "\n".join(rows) +
            f"\n\n{timing} ({info['wall_seconds']:.0f} s wall time including data preparation) on "
            f"{info['hardware']}.{stopped}\n")


def evaluation(info: dict, results: dict) -> str:
    rows = "\n".join(f"| {name} | {results[key]:.4f} |" for key, name in METRICS)
    return (f"## Evaluation results\n\nOn the validation text ({results['num_chars']:,} characters, "
            f"{results['num_tokens']:,} predicted tokens, windows of {results['block_size']} tokens):\n\n"
            f"| metric | value |\n|---|---|\n{rows}\n\nLoss per character is the summed token loss divided by the "
            "number of characters, so it compares models with different tokenizers; perplexity and loss per "
            "token do not.\n")


def sample_section(samples: list[dict]) -> str:
    if not samples:
        return "## Samples\n\nNo samples were generated.\n"
    settings = samples[0]["settings"]
    described = ", ".join(f"{key} {value}" for key, value in settings.items())
    parts = [f"## Samples\n\nGenerated at the end of training ({described}); an empty prompt starts from the "
             "end-of-text token. Not cherry-picked.\n"]
    for sample in samples:
        prompt = f"`{sample['prompt']}`" if sample["prompt"] else "(empty)"
        parts.append(f"Prompt {prompt}:\n\n```text\n{sample['prompt']}{sample['text']}\n```\n")
    return "\n".join(parts)


def limitations(info: dict) -> str:
    points = ["The model reproduces the style, vocabulary and biases of its training text, and nothing was done to "
              "measure or remove them.",
              "Generated text is often fluent locally but loses the thread over longer spans."]
    if info["from_scratch"]:
        points.append(f"It learnt language from {info['split_sizes']['train']['chars']:,} characters only: spelling "
                      "and grammar are imperfect, and words absent from the training text are out of its reach.")
    else:
        points.append("The pretrained model carries the biases of its pre-training text; the fine-tuning shifts its "
                      "style but does not remove them.")
    return "## Limitations and biases\n\n" + "\n".join(f"- {p}" for p in points) + "\n"


def service_usage(info: dict) -> str:
    request = json.dumps({"inputs": "Once upon a time", "model": info["name"],
                          "parameters": {"max_new_tokens": 50, "temperature": 0.8}})
    return ("## How to use\n\nThrough the textsvc service:\n\n```bash\n"
            f"curl -s localhost:8000/generate -H 'Content-Type: application/json' -d '{request}'\n```\n\n"
            "With transformers (textsvc registers its architectures on import):\n\n```python\nimport textsvc\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\nfrom textsvc.config.sampling import "
            "SamplingConfig\nfrom textsvc.generation.loop import generate\n\n"
            f"model = AutoModelForCausalLM.from_pretrained(\"{info['name']}\").eval()\n"
            f"tokenizer = AutoTokenizer.from_pretrained(\"{info['name']}\")\n"
            "settings = SamplingConfig(temperature=0.8, seed=0)\n"
            "print(generate(model, tokenizer, \"Once upon a time\", settings).text)\n```\n")
