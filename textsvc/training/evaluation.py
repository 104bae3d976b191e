"""Evaluate a saved model directory on a file: the report training writes, for classifiers and generators."""

from __future__ import annotations

import math

import torch

from textsvc.errors import DataError, ErrorCode
from textsvc.loading import classify_logits, load_classifier, load_generator
from textsvc.training.data import LABEL_COLUMN_GUESSES, TEXT_COLUMN_GUESSES, guess_column, label_encoder, load_file
from textsvc.training.metrics import classification_report
from textsvc.training.text_data import IGNORE_INDEX, evaluation_blocks, load_text_file, token_stream, tokenize_documents


def evaluate_classifier(model_dir: str, test_file: str, text_column: str | None = None,
                        label_column: str | None = None, device: str | None = None, batch_size: int = 64,
                        dtype: str = "float32") -> dict:
    """Accuracy, macro precision/recall/F1, per-class figures, confusion matrix and mean loss on `test_file`."""
    classifier = load_classifier(model_dir, device, dtype)
    dataset = load_file(test_file)
    columns = list(dataset.column_names)
    text_column = text_column or guess_column(columns, TEXT_COLUMN_GUESSES, "text")
    label_column = label_column or guess_column(columns, LABEL_COLUMN_GUESSES, "label", exclude=text_column)
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{test_file} has no column {column!r}; columns are {columns}",
                            code=ErrorCode.UNKNOWN_COLUMN)
    if len(dataset) == 0:
        raise DataError(f"{test_file} holds no examples", code=ErrorCode.EMPTY_SPLIT)
    names = tuple(classifier.label_names)
    # integer labels are ids unless the model's own label names are numbers
    encode = label_encoder(not any(name.lstrip("-").isdigit() for name in names), names)
    texts, labels = dataset[text_column], []
    for row, (text, label) in enumerate(zip(texts, dataset[label_column])):
        if not isinstance(text, str):
            raise DataError(f"row {row + 1}: column {text_column!r} holds {text!r}, not text",
                            code=ErrorCode.NON_TEXT_VALUE)
        label_id = encode(label)
        if label_id is None:
            raise DataError(f"row {row + 1}: label {label!r} is not one the model knows ({list(names)})",
                            code=ErrorCode.UNSEEN_LABEL)
        labels.append(label_id)
    logits = classify_logits(classifier, texts, batch_size)
    targets = torch.tensor(labels)
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    return {"loss": loss, **classification_report(targets.numpy(), logits.argmax(-1).numpy(), names)}


@torch.inference_mode()
def language_model_loss(model, ids: list[int], block_size: int, pad_token_id: int,
                        batch_size: int = 8) -> tuple[float, int]:
    """Summed next-token loss (nats) over a token stream, and the number of tokens it predicted."""
    blocks = evaluation_blocks(ids, block_size, pad_token_id).with_format("torch")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = {name: tensor.to(device) for name, tensor in blocks[start:start + batch_size].items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        sums = block_loss_sums(logits, batch["labels"])
        total, count = total + sums[:, 0].sum().item(), count + int(sums[:, 1].sum())
    return total, count


def block_loss_sums(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    """(B, 2) per block of (B, T, V) `logits`: its summed next-token loss (nats) and the number of tokens it
    predicted. Also the `Trainer`'s `preprocess_logits_for_metrics`, which gathers these instead of the logits."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    targets = labels[:, 1:]  # (B, T - 1): position t predicts token t + 1
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                               ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    return torch.stack([losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1).to(losses.dtype)], dim=1)


def mean_token_loss(eval_prediction) -> dict[str, float]:
    """The generator `Trainer`'s `compute_metrics`: the per-token loss over the blocks' gathered `block_loss_sums`.
    The `Trainer`'s own eval_loss averages batch means, each batch counted by its rows, and under DDP over rows that
    accelerate repeats to fill the processes' last batches; an un-prefixed "loss" replaces it."""
    sums = eval_prediction.predictions
    return {"loss": float(sums[:, 0].sum() / max(sums[:, 1].sum(), 1.0))}


def generator_report(total_loss: float, num_tokens: int, num_chars: int) -> dict:
    """Loss per token, perplexity, and loss per character: the figure that compares models across tokenizers."""
    if num_tokens == 0 or num_chars == 0:
        raise DataError("the evaluation text is too short to predict any token", code=ErrorCode.TEXT_TOO_SHORT)
    loss = total_loss / num_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "loss_per_char": total_loss / num_chars,
            "bits_per_char": total_loss / num_chars / math.log(2), "num_tokens": num_tokens, "num_chars": num_chars}


def evaluate_generator(model_dir: str, test_file: str, text_column: str | None = None, device: str | None = None,
                       batch_size: int = 8, block_size: int | None = None, dtype: str = "float32",
                       quantize: str = "none", int8_activations: bool = False) -> dict:
    """Loss, perplexity and loss per character of a generator on a text file (or a text column)."""
    generator = load_generator(model_dir, device, dtype, quantize, int8_activations)
    tokenized = tokenize_documents(load_text_file(test_file, text_column), generator.tokenizer)
    pad = generator.tokenizer.pad_token_id
    total, count = language_model_loss(generator.model, token_stream(tokenized), block_size or generator.block_size,
                                       pad if pad is not None else 0, batch_size)
    return {**generator_report(total, count, sum(tokenized["num_chars"])),
            "block_size": block_size or generator.block_size}
