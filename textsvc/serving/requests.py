"""Request bodies in, engine calls out, and back: the Hugging Face, TGI and OpenAI shapes.

Each route's body is a frozen dataclass: a field's annotation is its JSON type (null or absent: its default),
`metadata["schema"]` its bounds (JSON Schema keywords), `metadata["help"]` its meaning; parsing checks them and
`openapi.py` documents them. Fields that set a SamplingConfig field take its bounds and are checked by it.
`invalid_type` means the body or its main input has the wrong JSON type; `invalid_parameter` means a parameter is
unknown, of the wrong type or out of range. Both are 400s and both name the field.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from textsvc.config.common import check_range, coerce, field_types, setting
from textsvc.config.sampling import SamplingConfig, served_bounds
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError, ErrorCode, RequestError
from textsvc.generation.sequence import GenerationResult
from textsvc.serving.engine import ACTIVATIONS
from textsvc.serving.limits import check_stops, check_texts

TGI_FINISH = {"eos": "eos_token", "stop": "stop_sequence", "length": "length"}
OPENAI_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
SAMPLING = {field.name: field for field in dataclasses.fields(SamplingConfig)}
# TGI samples when asked, or when a warper is off its neutral value (text_generation_server/utils/tokens.py)
WARPERS = ("temperature", "top_k", "top_p")


def sampled(name: str, default: Any = dataclasses.MISSING, help: str | None = None) -> Any:
    """A field that sets SamplingConfig's `name`: its bounds, help and default from there, unless the API differs."""
    source = SAMPLING[name]
    return dataclasses.field(default=source.default if default is dataclasses.MISSING else default,
                             metadata={**source.metadata, "sampling": name, **({"help": help} if help else {})})


def neutral(value: Any) -> Any:
    """A field that clients send though textsvc does not implement it: accepted unset or at `value`, a no-op."""
    accepted = "unset only" if value is None else f"unset or at {json.dumps(value)}, which changes nothing"
    return setting(None, f"not supported: accepted {accepted}", enum=[value])


@dataclass(frozen=True)
class ClassifyParameters:
    """`/classify`'s `parameters`: the Hugging Face Inference API's text-classification options."""

    top_k: int | None = setting(None, "return the k best labels (default: every label)", minimum=1)
    truncation: bool = setting(True, "cut each text to the model's limit; false: `input_too_long` instead")
    function_to_apply: str | None = setting(None, "how logits become scores (default: sigmoid for multi-label "
                                                  "models, else softmax)", enum=list(ACTIVATIONS))


@dataclass(frozen=True)
class ClassifyRequest:
    """`POST /classify`: texts to classify, in the Hugging Face Inference API's shape."""

    inputs: str | tuple[str, ...] = dataclasses.field(metadata={"help": "a text, or a list of at most "
                                                                        "`max_inputs` texts (a server setting)"})
    model: str | None = setting(None, "the classifier (default: the server's default classifier)")
    parameters: ClassifyParameters = dataclasses.field(default_factory=ClassifyParameters)

    @property
    def arguments(self) -> dict:
        """Engine.classify's keyword arguments."""
        texts = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
        return {"name": self.model, "texts": texts, **dataclasses.asdict(self.parameters)}


@dataclass(frozen=True)
class TgiParameters:
    """text-generation-inference's `parameters`; greedy unless do_sample or a warper is set, as in TGI."""

    max_new_tokens: int = sampled("max_new_tokens")
    temperature: float = sampled("temperature")
    top_k: int = sampled("top_k")
    top_p: float = sampled("top_p")
    repetition_penalty: float = sampled("repetition_penalty")
    stop: tuple[str, ...] | str = sampled("stop", help="strings that end the text where they first appear (they "
                                                       "are not returned)")
    seed: int | None = sampled("seed")
    do_sample: bool = setting(False, "sample; otherwise greedy, unless temperature, top_k or top_p is set")
    details: bool = setting(False, "return the finish reason, the seed and each token with its log-probability")
    return_full_text: bool = setting(False, "return the prompt and its continuation")
    truncate: int | None = setting(None, "keep only the prompt's last N tokens", minimum=1)
    # what TGI's clients (huggingface_hub's InferenceClient, text_generation's Client) send with every request
    best_of: int | None = neutral(1)
    decoder_input_details: bool | None = neutral(False)
    frequency_penalty: float | None = neutral(0)
    top_n_tokens: int | None = neutral(0)
    typical_p: float | None = neutral(1)
    watermark: bool | None = neutral(False)
    grammar: None = neutral(None)
    adapter_id: str | None = neutral(None)


@dataclass(frozen=True)
class TgiRequest:
    """`POST /generate`, `/generate_stream` and `/`: a prompt to continue, in TGI's shape."""

    inputs: str = dataclasses.field(metadata={"help": "the prompt"})
    model: str | None = setting(None, "the generator (default: the server's default generator)")
    parameters: TgiParameters = dataclasses.field(default_factory=TgiParameters)
    stream: bool = setting(False, "answer token events as server-sent events (always so on /generate_stream)")


@dataclass(frozen=True)
class CompletionRequest:
    """`POST /v1/completions`: OpenAI's completion body; the options textsvc does not offer only at their defaults."""

    prompt: str = dataclasses.field(metadata={"help": "the prompt (or a list of one)"})
    model: str | None = setting(None, "the generator (default: the server's default generator)")
    max_tokens: int = sampled("max_new_tokens", 16)  # OpenAI's default
    temperature: float = sampled("temperature")
    top_p: float = sampled("top_p")
    seed: int | None = sampled("seed")
    stop: str | tuple[str, ...] | None = sampled("stop", help="a string or a list of strings that end the text "
                                                              "(they are not returned)")
    stream: bool = setting(False, "answer chunks as server-sent events, then `[DONE]`")
    n: int | None = neutral(1)
    best_of: int | None = neutral(1)
    echo: bool | None = neutral(False)
    logprobs: int | None = neutral(None)
    suffix: str | None = neutral(None)
    presence_penalty: float | None = neutral(0)
    frequency_penalty: float | None = neutral(0)


@dataclass(frozen=True)
class GenerationRequest:
    """What any generation route asks of the engine, with the response options of its API."""

    model: str | None
    prompt: str
    sampling: SamplingConfig
    details: bool = False
    return_full_text: bool = False
    stream: bool = False
    truncate: int | None = None  # keep only the prompt's last N tokens (TGI's `truncate`)
    default_length: bool = False  # max_new_tokens was not given: the worker may shorten it to fit the context

    @property
    def options(self) -> dict:
        """How the generation worker should fit the prompt to the model (see GenerationWorker.submit)."""
        return {"truncate": self.truncate, "shrink_to_fit": self.default_length}


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code=ErrorCode.INVALID_TYPE)
    return body


def _parameters(body: dict, cls: type) -> dict:
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("parameters: expected an object", field="parameters")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RequestError(f"parameters: unknown {unknown[0]!r} (known: {', '.join(sorted(known))})",
                           field=unknown[0])
    return params


def _build(cls: type, values: dict, **given: Any) -> Any:
    """`cls` from JSON `values` (and the fields in `given`): absent or null fields take their defaults; each other
    field's type and bounds are checked, except the sampling ones, which SamplingConfig checks."""
    hints = field_types(cls)
    for field in dataclasses.fields(cls):
        value = values.get(field.name)
        if field.name in given or value is None:
            continue
        if "sampling" not in field.metadata:
            try:
                value = coerce(value, field, hints[field.name])
                check_range(field.name, value, field.metadata.get("schema", {}))
            except ConfigError as error:
                raise RequestError(error.message, field=error.field) from error
        given[field.name] = value
    return cls(**given)


def sampling_config(request: Any, config: ServingConfig, **overrides: Any) -> SamplingConfig:
    """The SamplingConfig that a request's sampling fields ask for, within the server's bounds; a bad value is
    `invalid_parameter`."""
    values = {field.metadata["sampling"]: getattr(request, field.name) for field in dataclasses.fields(request)
              if "sampling" in field.metadata}
    try:
        sampling = SamplingConfig(**{**values, **overrides})
        check_stops(sampling.stop, config)
        for name, bounds in served_bounds(config.max_new_tokens_limit).items():
            check_range(name, getattr(sampling, name), bounds)
    except ConfigError as error:
        raise RequestError(error.message, field=error.field) from error
    return sampling


def _prompt(value: Any, field: str) -> str:
    if isinstance(value, list) and len(value) == 1:  # OpenAI clients may send a list of one prompt
        value = value[0]
    if not isinstance(value, str):
        raise RequestError(f"{field}: expected a string", code=ErrorCode.INVALID_TYPE, field=field)
    return value


def text_inputs(value: Any, field: str = "inputs") -> list[str]:
    """`inputs` as TEI takes it, one text or a list of texts, as a list; `invalid_type` otherwise."""
    texts = [value] if isinstance(value, str) else value  # a string is one text, not a sequence to check
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise RequestError(f"{field}: expected a string or a list of strings", code=ErrorCode.INVALID_TYPE,
                           field=field)
    return texts


def parse_classify(body: Any, config: ServingConfig) -> ClassifyRequest:
    """`{"inputs": str | [str], "parameters": {top_k, truncation, function_to_apply}, "model"}`, checked."""
    body = _object(body)
    texts = text_inputs(body.get("inputs"))
    if not texts or any(not text.strip() for text in texts):
        raise RequestError("inputs: empty text", code=ErrorCode.EMPTY_INPUT, field="inputs")
    if len(texts) > config.max_inputs:
        raise RequestError(f"inputs: {len(texts)} texts, at most {config.max_inputs}",
                           code=ErrorCode.TOO_MANY_INPUTS, field="inputs")
    check_texts(texts, "inputs", config)
    parameters = _build(ClassifyParameters, _parameters(body, ClassifyParameters))
    return _build(ClassifyRequest, body, inputs=tuple(texts), parameters=parameters)


def parse_tgi(body: Any, config: ServingConfig, stream: bool) -> GenerationRequest:
    """TGI's `{"inputs", "parameters": {...}, "stream"}`; greedy unless do_sample or a warper is set."""
    body = _object(body)
    given = _parameters(body, TgiParameters)
    params = _build(TgiParameters, given)
    warped = any(getattr(params, name) != SAMPLING[name].default for name in WARPERS)
    sampling = sampling_config(params, config, **({} if params.do_sample or warped else {"temperature": 0}))
    request = _build(TgiRequest, body, inputs=_prompt(body.get("inputs"), "inputs"), parameters=params)
    check_texts([request.inputs], "inputs", config)
    return GenerationRequest(request.model, request.inputs, sampling, truncate=params.truncate,
                             default_length=given.get("max_new_tokens") is None, details=params.details,
                             return_full_text=params.return_full_text, stream=stream or request.stream)


def parse_completion(body: Any, config: ServingConfig) -> GenerationRequest:
    """OpenAI's `/v1/completions` body; n, best_of, logprobs, echo and penalties beyond their defaults refused."""
    body = _object(body)
    request = _build(CompletionRequest, body, prompt=_prompt(body.get("prompt"), "prompt"))
    check_texts([request.prompt], "prompt", config)
    return GenerationRequest(request.model, request.prompt, sampling_config(request, config), stream=request.stream,
                             default_length=body.get("max_tokens") is None)


def tgi_details(result: GenerationResult, tokens: bool = True) -> dict:
    """TGI's `details` of a finished generation; the stream's final event has no per-token list."""
    details = {"finish_reason": TGI_FINISH[result.finish_reason], "generated_tokens": len(result.token_ids),
               "seed": result.seed}
    if tokens:
        details["prefill"] = []  # TGI lists prompt tokens only with decoder_input_details, which is not offered
        details["tokens"] = [{"id": t.token_id, "text": t.token, "logprob": t.logprob, "special": t.special}
                             for t in result.logprobs or ()]
    return details


def tgi_response(request: GenerationRequest, result: GenerationResult) -> dict:
    """TGI's `/generate` answer."""
    text = request.prompt + result.text if request.return_full_text else result.text
    return {"generated_text": text, **({"details": tgi_details(result)} if request.details else {})}


def tgi_event(request: GenerationRequest, event, result: GenerationResult | None) -> dict:
    """One TGI stream event; the last carries the whole text (and the details when asked for)."""
    final = result is not None and event.last
    text = (request.prompt if request.return_full_text else "") + result.text if final else None
    return {"token": {"id": event.id, "text": event.text, "logprob": event.logprob, "special": event.special},
            "generated_text": text, "details": tgi_details(result, tokens=False) if final and request.details else None}


def completion_id() -> str:
    """An id for one completion, in OpenAI's style."""
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def completion_response(model: str, result: GenerationResult | None, text: str, ident: str,
                        finish: str | None) -> dict:
    """An OpenAI completion (or, with `result` None, one stream chunk)."""
    body = {"id": ident, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
    if result is not None:
        generated = len(result.token_ids)
        body["usage"] = {"prompt_tokens": result.prompt_tokens, "completion_tokens": generated,
                         "total_tokens": result.prompt_tokens + generated}
    return body
