"""Train text generators with the Hugging Face `Trainer`: an LSTM or GPT-2-style decoder from scratch, or a
pretrained causal LM fine-tuned; then measure, sample, and write the model directory with its card."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import transformers
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    AutoModelForCausalLM,
    EarlyStoppingCallback,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from textsvc.config.sampling import SamplingConfig
from textsvc.config.training import GeneratorModelConfig, GeneratorTrainingConfig, TextDataConfig, default_learning_rate
from textsvc.generation.loop import generate
from textsvc.gguf_import import imported_hub_id
from textsvc.loading import context_length
from textsvc.models.lstm import LSTMForCausalLM, LSTMLMConfig
from textsvc.pretrained import hub_id_for
from textsvc.tokenization import load_tokenizer, train_byte_bpe_tokenizer, train_char_tokenizer
from textsvc.training.common import (
    learnt_tokenizer,
    optimisation_record,
    publish,
    run_record,
    save_model_files,
    shared_arguments,
    start_run,
)
from textsvc.training.evaluation import block_loss_sums, generator_report, language_model_loss, mean_token_loss
from textsvc.training.text_data import (
    TextSplits,
    evaluation_blocks,
    load_text_splits,
    pack_blocks,
    token_stream,
    tokenize_documents,
)

CARD_SAMPLING = SamplingConfig(temperature=0.8, top_k=50, seed=1234)  # the card's samples: fixed seed, repeatable


class TimeBudget(TrainerCallback):
    """Stops training after `max_minutes` of wall time; the step that stops is evaluated and saved as usual."""

    def __init__(self, max_minutes: float):
        self.seconds = max_minutes * 60
        self.started = time.monotonic()
        self.stopped = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.started >= self.seconds:
            control.should_training_stop = self.stopped = True
            if args.eval_strategy != "epoch":  # with "epoch", the Trainer evaluates and saves the cut-short epoch
                control.should_evaluate = control.should_save = True
        return control

    def elapsed_share(self) -> float:
        return min(1.0, (time.monotonic() - self.started) / self.seconds)


# Learning-rate multipliers over training progress in [0, 1], after warm-up (the shapes of HF's step schedules).
BUDGET_SCHEDULES = {"linear": lambda progress: 1.0 - progress,
                    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
                    "constant": lambda progress: 1.0, "constant_with_warmup": lambda progress: 1.0}


def budget_multiplier(progress: float, warmup_ratio: float, shape) -> float:
    """The learning-rate multiplier at `progress` in [0, 1]: linear warm-up, then `shape` over the rest."""
    if progress < warmup_ratio:
        return max(progress / warmup_ratio, 1e-3)
    return shape((progress - warmup_ratio) / (1.0 - warmup_ratio))


class BudgetTrainer(Trainer):
    """A `Trainer` whose learning-rate schedule runs over the wall-clock budget as well as the step count.

    A step schedule sized to "all epochs" never decays when a time budget ends the run first (and a run that stops
    at a high learning rate ends well above its best loss), so progress is the larger of the shares of steps and of
    time used: warm-up over the first `warmup_ratio` of it, then linear or cosine decay that ends with the budget.
    """

    def __init__(self, *args, budget: TimeBudget, warmup_ratio: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget, self.warmup_ratio = budget, warmup_ratio

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            shape = BUDGET_SCHEDULES[str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type))]

            def multiplier(step: int) -> float:
                progress = max(step / max(num_training_steps, 1), self.budget.elapsed_share())
                return budget_multiplier(progress, self.warmup_ratio, shape)

            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, multiplier)
            self._created_lr_scheduler = True
        return self.lr_scheduler


def generator_arguments(train: GeneratorTrainingConfig, model: GeneratorModelConfig,
                        run_dir: Path) -> TrainingArguments:
    """`TrainingArguments` for one run: evaluate and save every epoch (or `eval_steps`), keep the lowest loss."""
    strategy = "steps" if train.eval_steps else "epoch"
    return TrainingArguments(
        **shared_arguments(train, train.learning_rate or default_learning_rate(model.arch, model.from_scratch),
                           run_dir),
        eval_strategy=strategy, save_strategy=strategy, eval_steps=train.eval_steps, save_steps=train.eval_steps,
        metric_for_best_model="loss", greater_is_better=False,
    )


def prepare_generator_tokenizer(model: GeneratorModelConfig, splits: TextSplits, run_dir: Path,
                                args: TrainingArguments) -> PreTrainedTokenizerBase:
    """The pretrained model's tokenizer, or a byte-level BPE / character one learnt from the training text."""
    if not model.from_scratch:
        return load_tokenizer(model.model_name_or_path)
    texts = splits.splits["train"]["text"]
    return learnt_tokenizer(run_dir, args, lambda: train_char_tokenizer(texts, model.block_size)
                            if model.tokenizer_type == "char" else
                            train_byte_bpe_tokenizer(texts, model.vocab_size, model.block_size))


def build_generator(model: GeneratorModelConfig, tokenizer: PreTrainedTokenizerBase) -> transformers.PreTrainedModel:
    """A new LSTM language model, a new GPT-2-style decoder (nanoGPT's architecture), or a pretrained causal LM."""
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.eos_token_id}
    if model.arch == "lstm":
        return LSTMForCausalLM(LSTMLMConfig(vocab_size=len(tokenizer), **model.lstm_sizes(),
                                            max_position_embeddings=model.block_size, **special))
    if model.from_scratch:
        return GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tokenizer), n_positions=model.block_size, n_embd=model.hidden_size,
            n_layer=model.num_layers, n_head=model.num_attention_heads, resid_pdrop=model.dropout,
            embd_pdrop=model.dropout, attn_pdrop=model.dropout, **special))
    return AutoModelForCausalLM.from_pretrained(model.model_name_or_path, use_safetensors=True)


def train_generator(data: TextDataConfig, model: GeneratorModelConfig, train: GeneratorTrainingConfig,
                    callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train, measure validation loss per token and per character, sample, and write the model directory."""
    started = time.time()
    run_dir, last_checkpoint = start_run(train)
    splits = load_text_splits(data)
    args = generator_arguments(train, model, run_dir)
    tokenizer = prepare_generator_tokenizer(model, splits, run_dir, args)
    network = build_generator(model, tokenizer)
    # Every block is full, so each batch's mean loss is already the per-token mean. Left on, the Trainer divides
    # summed losses by `num_items_in_batch`, which it counts over unshifted labels for models whose `loss_type` it
    # cannot map (GPT-2 among them): every logged loss came out (T - 1) / T too low (1.516 for a true 1.528).
    network.accepts_loss_kwargs = False
    block_size = min(model.block_size, context_length(network) or model.block_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokenized = {name: tokenize_documents(split, tokenizer) for name, split in splits.splits.items()}
    validation_ids = token_stream(tokenized["validation"])
    budget = TimeBudget(train.max_minutes) if train.max_minutes else None
    extra = [EarlyStoppingCallback(train.early_stopping_patience)] if train.early_stopping_patience else []
    parts = dict(model=network, args=args, train_dataset=pack_blocks(tokenized["train"], block_size),
                 eval_dataset=evaluation_blocks(validation_ids, block_size, pad), processing_class=tokenizer,
                 data_collator=default_data_collator, callbacks=[*extra, *([budget] if budget else []), *callbacks],
                 compute_metrics=mean_token_loss, preprocess_logits_for_metrics=block_loss_sums)
    trainer = (BudgetTrainer(**parts, budget=budget, warmup_ratio=train.warmup_ratio) if budget
               else Trainer(**parts))
    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)

    def write(staging: Path) -> None:  # on the main process only
        trained = trainer.model.eval()
        total, count = language_model_loss(trained, validation_ids, block_size, pad, train.per_device_eval_batch_size)
        chars = sum(tokenized["validation"]["num_chars"])
        results = {**generator_report(total, count, chars), "block_size": block_size}
        samples = card_samples(trained, tokenizer, train, splits.splits["validation"]["text"])
        info = training_info(data, model, train, splits, tokenized, trainer, train_result.metrics,
                             time.time() - started, block_size, bool(budget and budget.stopped))
        save_model_files(staging, trainer, info, {"eval_results.json": results, "samples.json": {"samples": samples}})

    return publish(trainer, train, run_dir, write)


def card_prompts(validation_texts: Sequence[str], count: int = 3) -> tuple[str, ...]:
    """An empty prompt, then the first words of evenly spaced validation lines."""
    lines = [line for text in validation_texts for line in text.splitlines() if line.strip()]
    picks = [lines[i * len(lines) // count] for i in range(1, count)] if lines else []
    return ("", *(" ".join(line.split()[:3]) for line in picks))


def card_samples(model, tokenizer: PreTrainedTokenizerBase, train: GeneratorTrainingConfig,
                 validation_texts: Sequence[str]) -> list[dict]:
    """A few continuations from a fixed seed, with the settings that produced them."""
    settings = dataclasses.replace(CARD_SAMPLING, max_new_tokens=train.sample_max_new_tokens)
    prompts = train.sample_prompts if train.sample_prompts is not None else card_prompts(validation_texts)
    samples = []
    for prompt in prompts:
        result = generate(model, tokenizer, prompt, settings)
        samples.append({"prompt": prompt, "text": result.text, "finish_reason": result.finish_reason})
    keys = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens", "seed")
    return [{**sample, "settings": {key: getattr(settings, key) for key in keys}} for sample in samples]


def training_info(data: TextDataConfig, model: GeneratorModelConfig, train: GeneratorTrainingConfig,
                  splits: TextSplits, tokenized: dict, trainer: Trainer, train_metrics: dict, wall_seconds: float,
                  block_size: int, stopped_by_time: bool) -> dict:
    """What the model card says about how the generator was made, saved as `training_info.json`."""
    base = None if model.from_scratch else (model.base_model_name or imported_hub_id(model.model_name_or_path)
                                             or hub_id_for(model.model_name_or_path))
    tokenizer_kind = ("pretrained" if not model.from_scratch else
                      "char" if model.tokenizer_type == "char" else "bpe")
    sizes = {name: {"documents": len(split), "chars": sum(split["num_chars"]),
                    "tokens": sum(len(ids) for ids in split["input_ids"])} for name, split in tokenized.items()}
    return {
        "task": "text-generation", "arch": model.arch, "from_scratch": model.from_scratch, "base_model": base,
        "tokenizer": tokenizer_kind, "vocab_size": len(trainer.processing_class),
        "dataset": splits.source, "dataset_files": splits.files, "validation_carved": splits.validation_carved,
        "split_sizes": sizes,
        "hyperparameters": {
            **optimisation_record(trainer, train), "global_step": trainer.state.global_step,
            "max_minutes": train.max_minutes, "block_size": block_size, **_architecture_fields(model),
        },
        "stopped_by_time_budget": stopped_by_time,
        "best_checkpoint_metric": {"loss": trainer.state.best_metric},
        **run_record(trainer, train, train_metrics, wall_seconds),
    }


def _architecture_fields(model: GeneratorModelConfig) -> dict:
    if model.arch == "lstm":
        return {**model.lstm_sizes(), "tied_embeddings": True}
    if model.from_scratch:
        return {"hidden_size": model.hidden_size, "num_layers": model.num_layers,
                "num_attention_heads": model.num_attention_heads, "dropout": model.dropout}
    return {}
