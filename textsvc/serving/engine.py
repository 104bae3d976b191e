"""The serving engine: every model under `models_dir` loaded once, classification batched, generation per model."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from textsvc.cards.common import read_card_metadata
from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig, textsvc_home
from textsvc.devices import classifier_batch_tokens, pick_classifier_backend, pick_device, pick_dtype
from textsvc.errors import ConfigError, ErrorCode, OverloadedError, RequestError
from textsvc.generation.sequence import GenerationResult
from textsvc.loading import (
    LoadedClassifier,
    LoadedGenerator,
    context_length,
    is_generator,
    load_classifier,
    load_generator,
)
from textsvc.onnx_classifier import OnnxSession, onnx_session
from textsvc.quantization import parameter_count, quantization_of
from textsvc.serving.classifier_batching import DynamicBatcher
from textsvc.serving.compute import in_passing_thread, runner_for
from textsvc.serving.generator_batching import GenerationWorker, Job
from textsvc.serving.model_status import fingerprint, public_error, readiness_gaps
from textsvc.serving.telemetry import Telemetry

log = logging.getLogger(__name__)
RETIRE_AFTER_S = 2.0


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(value - top) for value in row]
    total = sum(exps)
    return [value / total for value in exps]


# on a handful of floats per text, in the request thread: plain Python costs a fraction of a torch call there
ACTIVATIONS = {"softmax": _softmax, "sigmoid": lambda row: [0.5 + 0.5 * math.tanh(value / 2) for value in row],
               "none": list}


def discover_models(models_dir: str | Path | None) -> dict[str, Path]:
    """Model directories directly under `models_dir` by name: no hidden ones, no `*.checkpoints`, none that
    lack config.json, none whose real path (symlinks followed) leaves `models_dir`."""
    if models_dir is None:
        raise ConfigError("models_dir: not set; name a folder of models, or let `textsvc serve` (or "
                          "`textsvc prepare-defaults`) prepare the default ones", field="models_dir")
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
            "parameters": parameter_count(model), "dtype": str(model.dtype).removeprefix("torch.")}


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
                "backends": self.loaded.backends, "quantization": self.loaded.quantization,
                "labels": self.loaded.label_names,
                "problem_type": config.problem_type or "single_label_classification",
                "max_input_tokens": self.loaded.max_length}

    @property
    def default_activation(self) -> str:
        multi = self.loaded.model.config.problem_type == "multi_label_classification"
        return "sigmoid" if multi else "softmax"  # independent labels get independent probabilities


@dataclass
class ServedGenerator:
    """A generator and the worker that decodes its requests in batches."""

    name: str
    path: Path
    loaded: LoadedGenerator
    worker: GenerationWorker | None = None
    kind: str = "generator"

    def describe(self) -> dict:
        """What /models says about it."""
        return {"name": self.name, "kind": self.kind, "task": "text-generation",
                **model_facts(self.loaded.model, self.loaded.device),
                "context_length": context_length(self.loaded.model),
                "quantization": quantization_of(self.loaded.model),
                "max_batch_size": self.worker.max_batch_size if self.worker else None}


class Engine:
    """Loads the models (`load`), each on its own, then classifies and generates for any number of request threads;
    `reload` publishes new, changed and removed model directories while it serves."""

    def __init__(self, config: ServingConfig, telemetry: Telemetry | None = None):
        self.config, self.telemetry = config, telemetry or Telemetry()
        self.models: dict[str, ServedClassifier | ServedGenerator] = {}  # replaced whole, never changed in place
        self.failures: dict[str, dict] = {}  # name -> model_status.public_error
        self.loaded, self.load_error = False, None
        self._versions: dict[str, tuple] = {}
        self._reload_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Loaded, and the models up meet the readiness policy (`readiness_gaps`)."""
        return self.loaded and self.load_error is None and not self.readiness_gaps()

    def readiness_gaps(self) -> list[str]:
        """Why the replica is not ready, in words ([] when it is)."""
        up = {name: served.kind for name, served in self.models.items()}
        failed = {name: failure["kind"] for name, failure in self.failures.items() if name not in up}
        return readiness_gaps(self.config, up, failed)

    def load(self) -> None:
        """Load every model directory, each on its own: one that fails is kept in `failures`, the others serve."""
        try:
            found = discover_models(self.config.models_dir)
            for kind, default in (("classifier", self.config.default_classifier),
                                  ("generator", self.config.default_generator)):
                if default is not None and default not in found:
                    raise ConfigError(f"default_{kind}: no {kind} named {default!r} in models_dir",
                                      field=f"default_{kind}")
            with self._reload_lock:
                self._publish(found)
            for kind, default in (("classifier", self.config.default_classifier),
                                  ("generator", self.config.default_generator)):
                if default in self.models and self.models[default].kind != kind:
                    raise ConfigError(f"default_{kind}: {default!r} is not a {kind}", field=f"default_{kind}")
        except Exception as error:
            self.load_error = error
            raise
        finally:
            self.loaded = True

    def reload(self) -> dict[str, list[str]]:
        """Publish what changed in `models_dir`: new and changed directories load beside the served version and
        replace it once warmed up; removed ones stop taking requests. Requests in flight finish where they are."""
        with self._reload_lock:
            return self._publish(discover_models(self.config.models_dir))

    def _publish(self, found: dict[str, Path]) -> dict[str, list[str]]:
        changes = {"added": [], "replaced": [], "removed": [], "failed": [], "unchanged": []}
        # generators load after classifiers: a model class's first forward (a classifier's warm-up) adds it to
        # transformers' registry of output-recording classes, which a compiled decoding step guards on; compiled
        # before it, the step would compile again at its next call, for seconds, while streams waited. (A model
        # that cannot be read sorts with the classifiers, to fail on its own.)
        for name, path in sorted(found.items(), key=lambda item: _kind_of(item[1]) == "generator"):
            version = fingerprint(path)
            if self._versions.get(name) == version:
                changes["unchanged"].append(name)
                continue
            self._versions[name] = version  # a failed version is tried again once it changes
            try:
                served = self._load_one(name, path)
            except Exception as error:  # this model fails alone
                log.error("loading model %s failed", name, exc_info=True)
                self.failures = {**self.failures, name: public_error(error, name, path, _kind_of(path))}
                changes["failed"].append(name)
                continue
            old = self.models.get(name)
            self.models = {**self.models, name: served}  # the switch: new requests get the warmed-up version
            self.failures = {key: value for key, value in self.failures.items() if key != name}
            changes["replaced" if old else "added"].append(name)
            log.info("loaded %s %s", served.kind, name)
            if old is not None:
                _retire(old)
        for name in [name for name in self._versions if name not in found]:
            old = self.models.get(name)
            self.models = {key: value for key, value in self.models.items() if key != name}
            self.failures = {key: value for key, value in self.failures.items() if key != name}
            del self._versions[name]
            changes["removed"].append(name)
            if old is not None:
                _retire(old)
        return changes

    def _load_one(self, name: str, path: Path) -> ServedClassifier | ServedGenerator:
        load = self._load_generator if is_generator(path) else self._load_classifier
        return in_passing_thread(load, name, path)  # its torch thread pool ends with it (serving.compute)

    def _load_generator(self, name: str, path: Path) -> ServedGenerator:
        # W8A8 pays only where a compiled step fuses the activations' rounding (textsvc.quantization)
        loaded = load_generator(path, self.config.device, self.config.dtype, self.config.quantize,
                                int8_activations=self.config.compile_decoding)
        served = ServedGenerator(name, path, loaded)
        served.worker = GenerationWorker(
            loaded.model, loaded.tokenizer, max_batch_size=self.config.max_generation_batch_size,
            max_queue_size=self.config.max_queue_size, retry_after_s=self.config.retry_after_s, name=name,
            compile_decoding=self.config.compile_decoding, cuda_graphs=self.config.cuda_graphs,
            stream_interval=self.config.stream_interval, **self.telemetry.worker_hooks(name))
        if self.config.warmup:  # first calls pay for lazy allocations, and a compiled step for its graphs
            served.worker.warm_up()
        return served

    def _load_classifier(self, name: str, path: Path) -> ServedClassifier:
        device = pick_device(self.config.device)
        quantize = self.config.classifier_quantize
        backend = pick_classifier_backend(self.config.classifier_backend, self.config.dtype, device, quantize)
        loaded = load_classifier(path, str(device), "float32" if backend == "onnxruntime" else self.config.dtype)
        if backend == "onnxruntime":
            loaded.session = self._onnx_session(name, path, loaded)
            if loaded.session is not None:  # it runs every pass; the float32 torch model stays for /models
                loaded.quantization = quantize
            elif self.config.classifier_backend == "auto":  # a model that does not export stays in torch, in `dtype`
                loaded.model.to(pick_dtype(self.config.dtype, device))
        served, run, hooks = ServedClassifier(name, path, loaded), runner_for(device), self.telemetry.worker_hooks(name)
        # the token budget bounds padding; ONNX Runtime runs each text alone, unpadded, and shares a batch's texts
        # among its callers, so more texts a batch leave them less waiting for each other (32 clients, MiniLM:
        # 99-130 texts/s uncut against 103-113 cut at 1,024 tokens; int8 copy 178-249 against 188-219)
        budget = (classifier_batch_tokens(self.config.max_batch_tokens, device) if loaded.session is None
                  else self.config.max_batch_tokens)
        served.batcher = DynamicBatcher(
            lambda ids: run(loaded.logits, ids).tolist(), max_batch_size=self.config.max_batch_size,  # B x num_labels
            max_wait_ms=self.config.max_wait_ms, length=len, max_batch_tokens=budget,
            max_queue_size=self.config.max_queue_size, name=name,
            retry_after_s=self.config.retry_after_s, on_batch=hooks["on_batch"], on_depth=hooks["on_depth"])
        if self.config.warmup:  # a lone text and a batch: in ONNX Runtime they run on different sessions
            run(loaded.logits, loaded.encode(["warm up"]))
            run(loaded.logits, loaded.encode(["warm up", "a batch of two"]))
        return served

    def _onnx_session(self, name: str, path: Path, loaded: LoadedClassifier) -> OnnxSession | None:
        """ONNX Runtime over the model's export; under `auto`, None (torch serves it) when the model does not
        export (the LSTM's packed sequences do not)."""
        try:
            return onnx_session(loaded.model, path, textsvc_home(self.config.home) / "onnx",
                                self.config.classifier_quantize)
        except Exception:
            if self.config.classifier_backend == "onnxruntime":
                raise
            log.warning("%s does not export to ONNX; torch serves it", name, exc_info=log.isEnabledFor(logging.DEBUG))
            return None

    def close(self) -> None:
        """Stop the batch workers after the queued work."""
        for served in self.models.values():
            _stop_worker(served)

    def model(self, name: str | None, kind: str | None = None) -> ServedClassifier | ServedGenerator:
        """The model called `name` (of `kind`, if given), or the default one; `unknown_model` (404) otherwise."""
        if not self.loaded:
            raise OverloadedError("the models are still loading", code=ErrorCode.NOT_READY,
                                  retry_after_s=self.config.retry_after_s)
        if name is None:
            default = self.config.default_classifier if kind == "classifier" else self.config.default_generator
            candidates = [default] if default else [n for n, m in self.models.items() if m.kind == kind]
            if len(candidates) != 1:
                raise RequestError(f"model: required, as {len(candidates)} {kind}s are loaded", field="model")
            name = candidates[0]
        served = self.models.get(name)
        if served is None and name in self.failures:
            raise RequestError(f"{name} failed to load; see /models", code=ErrorCode.LOAD_FAILED, field="model")
        if served is None or kind is not None and served.kind != kind:
            raise RequestError(f"no {kind or 'model'} named {name!r}", code=ErrorCode.UNKNOWN_MODEL, field="model")
        return served

    def card(self, name: str) -> dict:
        """A model's card: its markdown and the YAML front matter as data; `not_found` without a README.md."""
        served = self.model(name)
        card = served.path / "README.md"
        if not card.is_file():
            raise RequestError(f"{name} has no model card", code=ErrorCode.NOT_FOUND)
        text = card.read_text(encoding="utf-8")
        return {"name": name, "metadata": read_card_metadata(text), "markdown": text}

    def classify(self, name: str | None, texts: list[str], *, top_k: int | None = None, truncation: bool = True,
                 function_to_apply: str | None = None, deadline: float | None = None,
                 timing: dict | None = None) -> list[list[dict]]:
        """Per text, every label (or the `top_k` best) with its score, best first; `deadline_exceeded` past
        `deadline` (time.monotonic); `timing`, when given, gets `tokens` and `started` (when the first of its
        batches began) for the timing headers."""
        served = self.model(name, "classifier")
        activation = function_to_apply or served.default_activation
        ids = encode(served, texts, truncation)
        futures = served.batcher.submit_all(ids)
        labels, scores = served.loaded.label_names, ACTIVATIONS[activation]
        results = []
        for future in futures:
            logits = _result(future, deadline)  # num_labels floats
            ranked = sorted(zip(labels, scores(logits)), key=lambda pair: -pair[1])
            results.append([{"label": label, "score": score} for label, score in ranked[:top_k]])
        if timing is not None:
            timing.update(tokens=sum(map(len, ids)), started=min(getattr(f, "started", 0.0) for f in futures))
        return results

    def submit(self, name: str | None, prompt: str, config: SamplingConfig,
               should_stop: Callable[[], bool] = lambda: False, **options) -> Job:
        """Queue a generation on the generator's worker (`options`: GenerationWorker.submit's); iterate the job for
        its token events (with their log-probabilities when `config.logprobs`), then read `job.result`."""
        return self.model(name, "generator").worker.submit(prompt, config, should_stop, **options)

    def generate(self, name: str | None, prompt: str, config: SamplingConfig, **options) -> GenerationResult | None:
        """The whole continuation of `prompt`; None when `should_stop` (a deadline, a client gone) ended it."""
        job = self.submit(name, prompt, config, **options)
        for _ in job:
            pass
        return job.result


def _result(future: Future, deadline: float | None):
    try:
        return future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
    except FutureTimeout as error:
        future.cancel()  # still queued: the batch skips it
        raise RequestError("the request ran past request_timeout_s", code=ErrorCode.DEADLINE_EXCEEDED) from error


def _kind_of(path: Path) -> str | None:
    try:
        return "generator" if is_generator(path) else "classifier"
    except Exception:  # a config.json that cannot be read: the kind stays unknown
        return None


def _stop_worker(served: ServedClassifier | ServedGenerator) -> None:
    worker = served.batcher if isinstance(served, ServedClassifier) else served.worker
    if worker is not None:
        worker.close()


def _retire(served: ServedClassifier | ServedGenerator) -> None:
    """Stop a replaced model's worker once its requests are done: a request that picked it just before the switch
    still submits within RETIRE_AFTER_S, and `close` finishes everything queued."""
    timer = threading.Timer(RETIRE_AFTER_S, _stop_worker, args=(served,))
    timer.daemon = True
    timer.start()


def encode(served: ServedClassifier, texts: list[str], truncation: bool) -> list[list[int]]:
    """Token ids per text, in the request thread (tokenizing is not the batch's job); `input_too_long` if a text
    exceeds the model's limit and truncation is off."""
    limit, ids = served.loaded.max_length, served.loaded.encode(texts, truncation)
    for index, row in enumerate(ids):
        if len(row) > limit:
            raise RequestError(f"inputs[{index}]: {len(row)} tokens, more than the model's {limit}; send "
                               "parameters.truncation = true to cut it", code=ErrorCode.INPUT_TOO_LONG, field="inputs")
    return ids
