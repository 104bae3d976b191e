"""Request bodies in, engine calls out, and back: the Hugging Face, TGI and OpenAI shapes, as plain dicts.

`invalid_type` means the body or its main input has the wrong JSON type; `invalid_parameter` means a parameter is
unknown, of the wrong type, or out of range. Both are 400s and both name the field.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from textsvc.config.sampling import SamplingConfig
from textsvc.config.serving import ServingConfig
from textsvc.errors import ConfigError, RequestError
from textsvc.generation.sequence import GenerationResult

TGI_FINISH = {"eos": "eos_token", "stop": "stop_sequence", "length": "length"}
OPENAI_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
TGI_PARAMETERS = {"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "stop", "seed",
                  "do_sample", "details", "return_full_text", "truncate"}
# What TGI's clients send along with every request (huggingface_hub's InferenceClient, text_generation's Client):
# accepted at these values, which change nothing; any other value is refused by name.
TGI_NEUTRAL = {"best_of": (None, 1), "decoder_input_details": (None, False), "frequency_penalty": (None, 0),
               "top_n_tokens": (None, 0), "typical_p": (None, 1), "watermark": (None, False), "grammar": (None,),
               "adapter_id": (None,)}


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
        raise RequestError("the body must be a JSON object", code="invalid_type")
    return body


def _model(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("model: expected a name", field="model")
    return model


def _param(params: dict, name: str, kind: type | tuple, default: Any = None) -> Any:
    value = params.get(name, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise RequestError(f"{name}: wrong type {type(value).__name__}", field=name)
    return value


def parse_classify(body: Any, config: ServingConfig) -> dict:
    """`{"inputs": str | [str], "parameters": {top_k, truncation, function_to_apply}, "model"}` -> engine args."""
    body = _object(body)
    texts = body.get("inputs")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise RequestError("inputs: expected a string or a list of strings", code="invalid_type", field="inputs")
    if not texts or any(not text.strip() for text in texts):
        raise RequestError("inputs: empty text", code="empty_input", field="inputs")
    if len(texts) > config.max_inputs:
        raise RequestError(f"inputs: {len(texts)} texts, at most {config.max_inputs}", code="too_many_inputs",
                           field="inputs")
    params = _parameters(body, {"top_k", "truncation", "function_to_apply"})
    top_k = _param(params, "top_k", int)
    if top_k is not None and top_k < 1:
        raise RequestError("top_k: must be positive", field="top_k")
    activation = _param(params, "function_to_apply", str)
    if activation is not None and activation not in ("softmax", "sigmoid", "none"):
        raise RequestError("function_to_apply: softmax, sigmoid or none", field="function_to_apply")
    return {"name": _model(body), "texts": texts, "top_k": top_k, "function_to_apply": activation,
            "truncation": _param(params, "truncation", bool, True)}


def _parameters(body: dict, known: set[str]) -> dict:
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("parameters: expected an object", field="parameters")
    unknown = sorted(set(params) - known)
    if unknown:
        raise RequestError(f"parameters: unknown {unknown[0]!r} (known: {', '.join(sorted(known))})",
                           field=unknown[0])
    return params


def sampling_config(values: dict, config: ServingConfig) -> SamplingConfig:
    """A SamplingConfig from request values; its validation errors become `invalid_parameter`."""
    values = {name: value for name, value in values.items() if value is not None}
    if isinstance(values.get("stop"), list):
        values["stop"] = tuple(values["stop"])
    try:
        sampling = SamplingConfig(**values)
    except (ConfigError, TypeError) as error:
        field = getattr(error, "field", None)
        raise RequestError(getattr(error, "message", str(error)), field=field) from error
    if sampling.max_new_tokens > config.max_new_tokens_limit:
        raise RequestError(f"max_new_tokens: at most {config.max_new_tokens_limit}", field="max_new_tokens")
    return sampling


def _prompt(value: Any, field: str) -> str:
    if isinstance(value, list) and len(value) == 1:  # OpenAI clients may send a list of one prompt
        value = value[0]
    if not isinstance(value, str):
        raise RequestError(f"{field}: expected a string", code="invalid_type", field=field)
    return value


def parse_tgi(body: Any, config: ServingConfig, stream: bool) -> GenerationRequest:
    """TGI's `{"inputs", "parameters": {...}, "stream"}`; greedy unless do_sample or a sampling knob is set."""
    body = _object(body)
    params = _parameters(body, TGI_PARAMETERS | set(TGI_NEUTRAL))
    for name, neutral in TGI_NEUTRAL.items():
        if name in params and params[name] not in neutral:
            raise RequestError(f"{name}: not supported; send {neutral[-1]} or leave it out", field=name)
    truncate = _param(params, "truncate", int)
    if truncate is not None and truncate < 1:
        raise RequestError("truncate: must be positive", field="truncate")
    do_sample = _param(params, "do_sample", bool, False)
    temperature = _param(params, "temperature", (int, float))
    top_k, top_p = _param(params, "top_k", int), _param(params, "top_p", (int, float))
    # TGI samples when asked, or when any warper differs from its neutral value (text_generation_server/utils/tokens.py)
    warped = (temperature not in (None, 1)) or (top_k not in (None, 0)) or (top_p not in (None, 1))
    sampling = sampling_config({
        "max_new_tokens": params.get("max_new_tokens", 64), "temperature": temperature if do_sample or warped else 0,
        "top_k": top_k, "top_p": top_p, "repetition_penalty": params.get("repetition_penalty"),
        "stop": params.get("stop"), "seed": params.get("seed")}, config)
    return GenerationRequest(_model(body), _prompt(body.get("inputs"), "inputs"), sampling, truncate=truncate,
                             default_length=params.get("max_new_tokens") is None,
                             details=_param(params, "details", bool, False),
                             return_full_text=_param(params, "return_full_text", bool, False),
                             stream=stream or bool(_param(body, "stream", bool, False)))


def parse_completion(body: Any, config: ServingConfig) -> GenerationRequest:
    """OpenAI's `/v1/completions` body; n, best_of, logprobs, echo and penalties beyond their defaults refused."""
    body = _object(body)
    for name, neutral in (("n", 1), ("best_of", 1), ("echo", False), ("logprobs", None), ("suffix", None),
                          ("presence_penalty", 0), ("frequency_penalty", 0)):
        if body.get(name, neutral) not in (neutral, None):
            raise RequestError(f"{name}: only {neutral} is supported", field=name)
    stop = body.get("stop")
    max_tokens = body.get("max_tokens")
    sampling = sampling_config({"max_new_tokens": 16 if max_tokens is None else max_tokens,  # OpenAI's default
                                "temperature": body.get("temperature"),
                                "top_p": body.get("top_p"), "seed": body.get("seed"),
                                "stop": (stop,) if isinstance(stop, str) else stop}, config)
    return GenerationRequest(_model(body), _prompt(body.get("prompt"), "prompt"), sampling,
                             stream=bool(_param(body, "stream", bool, False)), default_length=max_tokens is None)


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
