"""OpenAI's chat completions in and out: the request body as a dataclass (documented by openapi.py like the others),
the conversation checked, and the response, stream chunk and usage shapes that OpenAI's clients parse."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any

from textsvc.config.common import setting
from textsvc.config.serving import ServingConfig
from textsvc.errors import ErrorCode, RequestError
from textsvc.generation.sequence import GenerationResult
from textsvc.serving.requests import OPENAI_FINISH, _build, _object, neutral, sampled, sampling_config

ROLES = ("system", "developer", "user", "assistant")  # developer: OpenAI's newer name for system


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation."""

    role: str = setting("user", "who speaks", enum=list(ROLES))
    content: str = setting("", "the text (or a list of `{\"type\": \"text\", \"text\"}` parts)")


@dataclass(frozen=True)
class StreamOptions:
    """`stream_options`: what a stream carries besides the text."""

    include_usage: bool = setting(False, "a last chunk, before `[DONE]`, with `usage` and no choices")


@dataclass(frozen=True)
class ChatRequest:
    """`POST /v1/chat/completions`: a conversation to answer, in OpenAI's shape, through the model's chat template."""

    messages: tuple[ChatMessage, ...] = dataclasses.field(metadata={"help": "the conversation so far"})
    model: str | None = setting(None, "the generator (default: the server's default generator)")
    max_tokens: int = sampled("max_new_tokens")
    max_completion_tokens: int | None = setting(None, "OpenAI's newer name for max_tokens (wins over it)", minimum=1)
    temperature: float = sampled("temperature")
    top_p: float = sampled("top_p")
    seed: int | None = sampled("seed")
    stop: str | tuple[str, ...] | None = sampled("stop", help="a string or a list of strings that end the text "
                                                              "(they are not returned)")
    logprobs: bool = setting(False, "return each generated token's log-probability")
    stream: bool = setting(False, "answer chunks as server-sent events: the role, the text, then `[DONE]`")
    stream_options: StreamOptions = dataclasses.field(default_factory=StreamOptions)
    response_format: dict | None = setting(None, "only `{\"type\": \"text\"}`: structured output is not offered")
    n: int | None = neutral(1)
    top_logprobs: int | None = neutral(0)
    presence_penalty: float | None = neutral(0)
    frequency_penalty: float | None = neutral(0)
    logit_bias: None = neutral(None)
    tools: None = neutral(None)
    tool_choice: str | None = neutral("none")
    user: str | None = setting(None, "the end user's id (ignored)")


@dataclass(frozen=True)
class ChatCompletion:
    """A parsed chat request: the conversation, the sampling it asks for, and its response options."""

    model: str | None
    messages: list[dict]
    sampling: Any  # SamplingConfig
    stream: bool
    include_usage: bool
    default_length: bool

    @property
    def options(self) -> dict:
        """How the generation worker should fit the prompt to the model (see GenerationWorker.submit)."""
        return {"truncate": None, "shrink_to_fit": self.default_length}


def _content(value: Any, index: int) -> str:
    """A message's text: a string, or OpenAI's list of text parts joined."""
    field = f"messages[{index}].content"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in value):
            raise RequestError(f"{field}: only text parts are supported", field=field)
        return "".join(part["text"] for part in value)
    raise RequestError(f"{field}: expected a string or a list of text parts", code=ErrorCode.INVALID_TYPE,
                       field=field)


def _messages(value: Any) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(message, dict) for message in value):
        raise RequestError("messages: expected a list of objects", code=ErrorCode.INVALID_TYPE, field="messages")
    if not value:
        raise RequestError("messages: the conversation is empty", code=ErrorCode.EMPTY_INPUT, field="messages")
    messages = []
    for index, message in enumerate(value):
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{index}].role: must be one of {', '.join(ROLES)}",
                               field=f"messages[{index}].role")
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _content(message.get("content"), index)})
    return messages


def parse_chat(body: Any, config: ServingConfig) -> ChatCompletion:
    """OpenAI's chat body, checked; `n` > 1, `top_logprobs`, tools and non-text `response_format` refused by name."""
    body = _object(body)
    messages = _messages(body.get("messages"))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("stream_options: expected an object", field="stream_options")
    stream_options = _build(StreamOptions, options or {})
    request = _build(ChatRequest, body, messages=(), stream_options=stream_options)
    if request.response_format not in (None, {"type": "text"}):
        raise RequestError("response_format: only {\"type\": \"text\"} is supported", field="response_format")
    length = request.max_completion_tokens
    sampling = sampling_config(request, config, logprobs=request.logprobs,
                               **({"max_new_tokens": length} if length is not None else {}))
    given_length = length is not None or body.get("max_tokens") is not None
    return ChatCompletion(request.model, messages, sampling, request.stream, stream_options.include_usage,
                          default_length=not given_length)


def chat_id() -> str:
    """An id for one chat completion, in OpenAI's style."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(result: GenerationResult) -> dict:
    """OpenAI's token counts of a finished generation."""
    generated = len(result.token_ids)
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": generated,
            "total_tokens": result.prompt_tokens + generated}


def token_logprobs(entries) -> dict:
    """OpenAI's `logprobs` of a choice from (token text, logprob) pairs; no alternatives (top_logprobs is 0)."""
    return {"content": [{"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8")), "top_logprobs": []}
                        for text, logprob in entries]}


def chat_response(model: str, result: GenerationResult, ident: str, with_logprobs: bool) -> dict:
    """A whole chat completion."""
    logprobs = (token_logprobs((t.token, t.logprob) for t in result.logprobs if not t.special)
                if with_logprobs and result.logprobs is not None else None)
    return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "logprobs": logprobs, "finish_reason": OPENAI_FINISH[result.finish_reason]}],
            "usage": usage(result)}


def chat_chunk(model: str, ident: str, delta: dict, finish: str | None = None, logprobs: dict | None = None,
               result: GenerationResult | None = None) -> dict:
    """One stream chunk; with `result` (and `delta` None), the usage chunk that has no choices."""
    chunk = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "system_fingerprint": None,
             "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": logprobs,
                                                   "finish_reason": finish}]}
    if result is not None:
        chunk["usage"] = usage(result)
    return chunk
