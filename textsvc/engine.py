"""The serving engine: every model under `models_dir` loaded once, classification batched, generation per model."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textsvc.batching import DynamicBatcher
from textsvc.config import SamplingConfig, ServingConfig
from textsvc.errors import ConfigError, OverloadedError, RequestError
from textsvc.inference import LoadedClassifier, load_classifier
from textsvc.lm_inference import LoadedGenerator, is_generator, load_generator
from textsvc.cards import read_card_metadata
from textsvc.sampling import GenerationResult, context_length, eos_ids, stream
from textsvc.telemetry import Telemetry

log = logging.getLogger(__name__)
ACTIVATIONS = {"softmax": lambda logits: logits.softmax(-1), "sigmoid": torch.sigmoid, "none": lambda logits: logits}


def discover_models(models_dir: str | Path) -> dict[str, Path]:
    """Model directories directly under `models_dir` by name: no hidden ones, no `*.checkpoints`, none that
    lack config.json, none whose real path (symlinks followed) leaves `models_dir`."""
    root = Path(models_dir).resolve()
    if not root.is_dir():
        raise ConfigError(f"models_dir: {models_dir} is not a directory", field="models_dir")
    found = {}
    for path in sorted(root.iterdir()):
        real = path.resolve()
        if (path.name.startswith(".") or path.name.endswith(".checkpoints") or not real.is_dir()
                or root not in real.parents or not (real / "config.json").is_file()):
            continue
        found[path.name] = real
    return found


def model_facts(model, device) -> dict:
    """Architecture, size, dtype and device: the part of /models that every kind of model shares."""
    return {"architecture": (model.config.architectures or [type(model).__name__])[0], "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()), "dtype": str(model.dtype).removeprefix("torch.")}


@dataclass
class ServedClassifier:
    """A classifier and the batcher that feeds it."""

    name: str
    path: Path
    loaded: LoadedClassifier
    batcher: DynamicBatcher | None = None
    kind: str = "classifier"

    def describe(self) -> dict:
        """What /models says about it."""
        config = self.loaded.model.config
        return {"name": self.name, "kind": self.kind, "task": "text-classification",
                **model_facts(self.loaded.model, self.loaded.device),
                "labels": self.loaded.label_names, "problem_type": config.problem_type or "single_label_classification",
                "max_input_tokens": self.loaded.max_length}

    @property
    def default_activation(self) -> str:
        multi = self.loaded.model.config.problem_type == "multi_label_classification"
        return "sigmoid" if multi else "softmax"  # independent labels get independent probabilities


@dataclass
class ServedGenerator:
    """A generator; one request at a time uses it (a lock), and a bounded number wait for it."""

    name: str
    path: Path
    loaded: LoadedGenerator
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    kind: str = "generator"

    def describe(self) -> dict:
        """What /models says about it."""
        return {"name": self.name, "kind": self.kind, "task": "text-generation",
                **model_facts(self.loaded.model, self.loaded.device),
                "context_length": context_length(self.loaded.model)}


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, with the text it completes ('' while held back) and whether it is the last."""

    id: int
    text: str
    logprob: float
    special: bool
    last: bool = False


class Engine:
    """Loads the models once (`load`), then classifies and generates for any number of request threads."""

    def __init__(self, config: ServingConfig, telemetry: Telemetry | None = None):
        self.config, self.telemetry = config, telemetry or Telemetry()
        self.models: dict[str, ServedClassifier | ServedGenerator] = {}
        self.ready, self.load_error = False, None
        self._admission = threading.Lock()

    def load(self) -> None:
        """Load every model directory, warm each up, start the classifiers' batchers; then `ready` is True."""
        try:
            for name, path in discover_models(self.config.models_dir).items():
                self.models[name] = self._load_one(name, path)
                log.info("loaded %s %s from %s", self.models[name].kind, name, path)
            for kind, default in (("classifier", self.config.default_classifier),
                                  ("generator", self.config.default_generator)):
                if default is not None and getattr(self.models.get(default), "kind", None) != kind:
                    raise ConfigError(f"default_{kind}: no {kind} named {default!r} in {self.config.models_dir}",
                                      field=f"default_{kind}")
            self.ready = True
        except Exception as error:
            self.load_error = error
            raise

    def _load_one(self, name: str, path: Path) -> ServedClassifier | ServedGenerator:
        if is_generator(path):
            served = ServedGenerator(name, path, load_generator(path, self.config.device))
            if self.config.warmup:  # first calls pay for lazy allocations; pay them before /ready
                stream_all(served, "", SamplingConfig(max_new_tokens=1, temperature=0))
            return served
        served = ServedClassifier(name, path, load_classifier(path, self.config.device))
        metrics = self.telemetry
        served.batcher = DynamicBatcher(
            lambda ids: _predict_logits(served.loaded, ids), max_batch_size=self.config.max_batch_size,
            max_wait_ms=self.config.max_wait_ms, max_queue_size=self.config.max_queue_size, name=name,
            retry_after_s=self.config.retry_after_s,
            on_batch=lambda size: metrics.batch_size.labels(name).observe(size),
            on_depth=lambda depth: metrics.queue_depth.labels(name).set(depth))
        if self.config.warmup:
            _predict_logits(served.loaded, [encode(served, ["warm up"], truncation=True)[0]])
        return served

    def close(self) -> None:
        """Stop the batch workers after the queued work."""
        for served in self.models.values():
            if isinstance(served, ServedClassifier) and served.batcher is not None:
                served.batcher.close()

    def model(self, name: str | None, kind: str | None = None) -> ServedClassifier | ServedGenerator:
        """The model called `name` (of `kind`, if given), or the default one; `unknown_model` (404) otherwise."""
        if not self.ready:
            raise OverloadedError("the models are still loading", code="not_ready",
                                  retry_after_s=self.config.retry_after_s)
        if name is None:
            default = self.config.default_classifier if kind == "classifier" else self.config.default_generator
            candidates = [default] if default else [n for n, m in self.models.items() if m.kind == kind]
            if len(candidates) != 1:
                raise RequestError(f"model: required, as {len(candidates)} {kind}s are loaded", field="model")
            name = candidates[0]
        served = self.models.get(name)
        if served is None or kind is not None and served.kind != kind:
            raise RequestError(f"no {kind or 'model'} named {name!r}", code="unknown_model", field="model",
                               http_status=404)
        return served

    def card(self, name: str) -> dict:
        """A model's card: its markdown and the YAML front matter as data; `not_found` without a README.md."""
        served = self.model(name)
        card = served.path / "README.md"
        if not card.is_file():
            raise RequestError(f"{name} has no model card", code="not_found", http_status=404)
        text = card.read_text(encoding="utf-8")
        return {"name": name, "metadata": read_card_metadata(text), "markdown": text}

    def classify(self, name: str | None, texts: list[str], *, top_k: int | None = None, truncation: bool = True,
                 function_to_apply: str | None = None) -> list[list[dict]]:
        """Per text, every label (or the `top_k` best) with its score, best first."""
        served = self.model(name, "classifier")
        activation = function_to_apply or served.default_activation
        futures = served.batcher.submit_all(encode(served, texts, truncation))
        labels, scores = served.loaded.label_names, ACTIVATIONS[activation]
        results = []
        for future in futures:
            ranked = sorted(zip(labels, scores(future.result()).tolist()), key=lambda pair: -pair[1])  # (num_labels,)
            results.append([{"label": label, "score": score} for label, score in ranked[:top_k]])
        return results

    def admit(self, name: str | None) -> ServedGenerator:
        """Wait for the generator's lock (the caller releases it); `overloaded` when too many wait already."""
        served = self.model(name, "generator")
        with self._admission:
            if served.waiting >= self.config.max_queue_size:
                raise OverloadedError(f"{served.waiting} requests already wait for {served.name}",
                                      retry_after_s=self.config.retry_after_s)
            served.waiting += 1
            self.telemetry.queue_depth.labels(served.name).set(served.waiting)
        try:
            served.lock.acquire()
        finally:
            with self._admission:
                served.waiting -= 1
                self.telemetry.queue_depth.labels(served.name).set(served.waiting)
        return served

    def generate(self, name: str | None, prompt: str, config: SamplingConfig) -> GenerationResult:
        """The whole continuation of `prompt`, made while holding the model."""
        served = self.admit(name)
        try:
            tokens = GenerationStream(served, prompt, config, self.telemetry)
            for _ in tokens:
                pass
            return tokens.result
        finally:
            served.lock.release()


class GenerationStream:
    """Token events of one generation, on a model whose lock the caller holds; `result` once exhausted.

    Generation runs only as the events are pulled, and `should_stop()` (a client that hung up) is asked between
    tokens, so an abandoned stream costs at most one more token.
    """

    def __init__(self, served: ServedGenerator, prompt: str, config: SamplingConfig, telemetry: Telemetry,
                 should_stop: Callable[[], bool] = lambda: False):
        self.served, self.prompt, self.telemetry, self.should_stop = served, prompt, telemetry, should_stop
        self.config = dataclasses.replace(config, logprobs=True)  # every event carries its token's logprob
        self.result: GenerationResult | None = None
        self.cancelled = False

    def __iter__(self) -> Iterator[TokenEvent]:
        model, tokenizer = self.served.loaded.model, self.served.loaded.tokenizer
        special = eos_ids(model, tokenizer) | set(tokenizer.all_special_ids)
        started, sent, held = time.perf_counter(), 0, None
        pieces = stream(model, tokenizer, self.prompt, self.config)

        def events(piece: str) -> Iterator[TokenEvent]:
            nonlocal sent, held
            new, logprobs = pieces.token_ids[sent:], pieces.token_logprobs[sent:]
            if sent == 0 and new:
                self.telemetry.time_to_first_token.labels(self.served.name).observe(time.perf_counter() - started)
            sent += len(new)
            for k, (token, logprob) in enumerate(zip(new, logprobs)):
                if held is not None:
                    yield held
                held = TokenEvent(token, piece if k == len(new) - 1 else "", logprob.logprob, token in special)
            if not new and piece and held is not None:  # text released late (end of a character or a stop check)
                held = dataclasses.replace(held, text=held.text + piece)

        for piece in pieces:
            yield from events(piece)
            if self.should_stop():
                self.cancelled = True
                return
        yield from events("")  # the EOS token and any that spelled a stop string: no text
        self.result = pieces.result
        self.telemetry.tokens_generated.labels(self.served.name).inc(len(self.result.token_ids))
        if held is not None:
            yield dataclasses.replace(held, last=True)


def stream_all(served: ServedGenerator, prompt: str, config: SamplingConfig) -> GenerationResult:
    """Run a generation to its end without metrics (the warm-up)."""
    pieces = stream(served.loaded.model, served.loaded.tokenizer, prompt, config)
    for _ in pieces:
        pass
    return pieces.result


def encode(served: ServedClassifier, texts: list[str], truncation: bool) -> list[list[int]]:
    """Token ids per text, in the request thread (tokenizing is not the batch's job); `input_too_long` if a text
    exceeds the model's limit and truncation is off."""
    limit = served.loaded.max_length
    ids = served.loaded.tokenizer(texts, truncation=truncation, max_length=limit if truncation else None,
                                  verbose=False)["input_ids"]
    for index, row in enumerate(ids):
        if len(row) > limit:
            raise RequestError(f"inputs[{index}]: {len(row)} tokens, more than the model's {limit}; send "
                               "parameters.truncation = true to cut it", code="input_too_long", field="inputs")
    return ids


@torch.inference_mode()
def _predict_logits(classifier: LoadedClassifier, ids: list[list[int]]) -> list[torch.Tensor]:
    """One forward pass over a padded batch; one (num_labels,) float32 row per text."""
    batch = classifier.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    inputs = {name: tensor.to(classifier.device) for name, tensor in batch.items()
              if name in classifier.tokenizer.model_input_names}
    return list(classifier.model(**inputs).logits.float().cpu())  # B x (num_labels,)
