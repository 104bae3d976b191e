"""The generator's model card: the classifier card's layout, with loss, perplexity, loss per character and real
samples, rendered from the files a generator's training run saves in its model directory."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCardData

from textsvc.cards import common
from textsvc.modeldir import read_json

TASK = "text-generation"
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


def render_generator_card(directory: Path, info: dict) -> str:
    """The whole `README.md` for a trained generator directory, given its `training_info.json`."""
    results = read_json(directory / "eval_results.json")
    samples = (read_json(directory / "samples.json") or {}).get("samples", [])
    precision = read_json(directory / common.PRECISION_RESULTS)
    return common.join_sections(front_matter(info, results), [
        model_details(info), intended_use(info), training_data(info),
        training_procedure(info) + common.picture(directory, *common.CURVES), evaluation(results),
        *([precision_section(precision)] if precision else []),
        sample_section(samples), limitations(info), service_usage(info), common.framework_versions(info)])


def front_matter(info: dict, results: dict) -> ModelCardData:
    """Licence, data, base model, and the validation figures in `model-index`."""
    metrics = [{"metric_type": key, "metric_value": round(results[key], 4), "metric_name": f"{name} (validation)"}
               for key, name in METRICS]
    return common.card_data(info, TASK, ["perplexity"], common.eval_results(TASK, info["dataset"], "validation",
                                                                            metrics), extra_tags=[TASK])


def model_details(info: dict) -> str:
    """What the generator is, its size and its tokenizer."""
    return common.model_details(info, ARCH_DESCRIPTIONS[(info["arch"], info["from_scratch"])],
                                f"reads text through {TOKENIZERS[info['tokenizer']]} ({info['vocab_size']:,} tokens)")


def intended_use(info: dict) -> str:
    """Continuing text in the training data's style; nothing that needs true or safe text."""
    return common.intended_use(
        f"Continuing {info['language']} text in the style of `{info['dataset']}`, through the textsvc generation "
        "route or transformers; a small model for experiments, teaching and benchmarks.",
        "Anything that needs true or safe text: the model invents freely, has no notion of facts, and was not "
        "trained to follow instructions or refuse harmful requests. Its training examples were "
        f"{info['hyperparameters']['block_size']} tokens long; it has never seen longer contexts.")


def training_data(info: dict) -> str:
    """The source, and documents, characters and tokens per split."""
    rows = [[split, f"{s['documents']:,}", f"{s['chars']:,}", f"{s['tokens']:,}"]
            for split, s in info["split_sizes"].items()]
    carved = f"The validation text is {info['validation_carved']}.\n" if info.get("validation_carved") else ""
    return (f"## Training data\n\n{common.data_source(info)}. Each document is followed by an end-of-text token and "
            "the training text is packed into blocks.\n\n"
            + common.table(["split", "documents", "characters", "tokens"], rows) + "\n\n" + carved)


def training_procedure(info: dict) -> str:
    """Next-token prediction with the `Trainer`, the hyperparameters, and whether the time budget stopped it."""
    stopped = (" Training was stopped by its wall-clock budget (`max_minutes`)." if info.get("stopped_by_time_budget")
               else "")
    return common.training_procedure(info, " on next-token prediction: AdamW with weight decay, warm-up then decay, "
                                           "validation loss measured at every evaluation, and the checkpoint with "
                                           "the lowest validation loss kept.", stopped)


def evaluation(results: dict) -> str:
    """Loss, perplexity and loss per character on the validation text."""
    rows = common.table(["metric", "value"], [[name, f"{results[key]:.4f}"] for key, name in METRICS])
    return (f"## Evaluation results\n\nOn the validation text ({results['num_chars']:,} characters, "
            f"{results['num_tokens']:,} predicted tokens, windows of {results['block_size']} tokens):\n\n"
            f"{rows}\n\nLoss per character is the summed token loss divided by the number of characters, so it "
            "compares models with different tokenizers; perplexity and loss per token do not.\n")


def precision_section(precision: dict) -> str:
    """How the loss per character moves with the precision `textsvc serve` runs the model in: `precision` holds
    the `device`, the `text` measured and its `runs`, each a setting (`dtype`, `quantize`, `int8_activations`) with
    its `evaluate_generator` report; the first run is the reference the others are compared with."""
    runs, reference = precision["runs"], precision["runs"][0]["loss_per_char"]
    rows = [[run["dtype"], run["dtype"] if run["quantize"] == "none" else run["quantize"],
             "int8 (W8A8)" if run["int8_activations"] else run["dtype"], f"{run['loss_per_char']:.4f}",
             "" if run is runs[0] else f"{(run['loss_per_char'] / reference - 1) * 100:+.2f}%"] for run in runs]
    unmeasured = "" if any(run["dtype"] == "bfloat16" for run in runs) else common.BF16_UNMEASURED
    first = runs[0]
    return (f"## Loss by serving precision\n\n{common.AUTO_DTYPE} On the CPU, `--quantize int8` or `int4` rounds "
            "its weights, and with `--compile_decoding` on CPUs with int8 instructions (VNNI, AMX) the products of "
            "more than 4 rows (prefills, large batches) round their activations to int8 as well. Loss per "
            f"character on {precision['text']} ({first['num_chars']:,} characters, {first['num_tokens']:,} predicted "
            f"tokens, windows of {first['block_size']} tokens), on {precision['device']}{unmeasured}:\n\n"
            + common.table(["dtype", "weights", "activations", "loss per character (nats)", "against the first row"],
                           rows) + "\n")


def sample_section(samples: list[dict]) -> str:
    """The samples generated at the end of training, with their settings."""
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
    """The training text's biases, losing the thread, and what a small corpus or pre-training bring."""
    points = ["The model reproduces the style, vocabulary and biases of its training text, and nothing was done to "
              "measure or remove them.",
              "Generated text is often fluent locally but loses the thread over longer spans."]
    if info["from_scratch"]:
        points.append(f"It learnt language from {info['split_sizes']['train']['chars']:,} characters only: spelling "
                      "and grammar are imperfect, and words absent from the training text are out of its reach.")
    else:
        points.append("The pretrained model carries the biases of its pre-training text; the fine-tuning shifts its "
                      "style but does not remove them.")
    return common.limitations(points)


def service_usage(info: dict) -> str:
    """`/generate` with curl, and loading and sampling with transformers and textsvc."""
    request = {"inputs": "Once upon a time", "model": info["name"],
               "parameters": {"max_new_tokens": 50, "temperature": 0.8}}
    return common.service_usage("generate", request, (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\nfrom textsvc.config.sampling import "
        "SamplingConfig\nfrom textsvc.generation.loop import generate\n\n"
        f"model = AutoModelForCausalLM.from_pretrained(\"{info['name']}\").eval()\n"
        f"tokenizer = AutoTokenizer.from_pretrained(\"{info['name']}\")\n"
        "settings = SamplingConfig(temperature=0.8, seed=0)\n"
        "print(generate(model, tokenizer, \"Once upon a time\", settings).text)\n"))
