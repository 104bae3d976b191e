"""`POST /v1/chat/completions`, OpenAI's chat route: the conversation becomes a prompt through the model's own chat
template (or the one `--chat_template` names), then runs through the same engine, queue and limits as /generate."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, g, jsonify
from jinja2.exceptions import TemplateError

from textsvc.errors import ErrorCode, RequestError
from textsvc.serving.chat_requests import chat_chunk, chat_id, chat_response, parse_chat, token_logprobs
from textsvc.serving.engine import ServedGenerator
from textsvc.serving.guard import admit_inference, deadline_error, release_inference, should_stop
from textsvc.serving.http import client_gone, current_engine, event_stream, json_body
from textsvc.serving.requests import OPENAI_FINISH
from textsvc.serving.routes import until_deadline
from textsvc.serving.timing import finish

chat = Blueprint("chat", __name__)
chat.before_request(admit_inference)  # keys, shutdown refusal and per-key limits, as on /generate
chat.after_request(release_inference)


@functools.cache
def _template_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")  # once: the file is read at the first chat request


def chat_template(served: ServedGenerator, fallback: str | None) -> str:
    """The generator's own chat template, else the `--chat_template` file's; `no_chat_template` without either."""
    template = served.loaded.tokenizer.chat_template or (_template_file(fallback) if fallback else None)
    if not template:
        raise RequestError(f"{served.name} has no chat template; serve it with --chat_template FILE, or use "
                           "/v1/completions", code=ErrorCode.NO_CHAT_TEMPLATE, field="model")
    return template


def chat_prompt(served: ServedGenerator, messages: list[dict], fallback: str | None) -> str:
    """The conversation as the model's prompt, ending where the assistant's reply begins."""
    template = chat_template(served, fallback)
    try:
        return served.loaded.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                           add_generation_prompt=True)
    except TemplateError as error:  # templates refuse conversations they cannot render (roles out of order, say)
        raise RequestError(f"messages: the chat template refused them: {error}", field="messages") from error


@chat.post("/v1/chat/completions")
def chat_completions():
    engine = current_engine()
    request = parse_chat(json_body(), engine.config)
    served = engine.model(request.model, "generator")
    prompt = chat_prompt(served, request.messages, engine.config.chat_template)
    g.job = job = engine.submit(served.name, prompt, request.sampling, should_stop(client_gone()),
                                **request.options)
    ident = chat_id()
    if not request.stream:
        result = finish(job)
        if result is None:
            raise deadline_error()
        g.result = result
        return jsonify(chat_response(served.name, result, ident, request.sampling.logprobs))
    return _stream(served.name, job, until_deadline(job), ident, request)


def _stream(name: str, job, events, ident: str, request) -> Response:
    """The role first, then the text as it is released, the finish reason, the usage if asked, then [DONE]."""
    def chunks() -> Iterator[dict]:
        yield chat_chunk(name, ident, {"role": "assistant", "content": ""})
        for event in events:
            if event.text:
                logprobs = (token_logprobs([(event.text, event.logprob)])
                            if request.sampling.logprobs and event.logprob is not None else None)
                yield chat_chunk(name, ident, {"content": event.text}, logprobs=logprobs)
        if job.result is None:  # the client went away
            return
        yield chat_chunk(name, ident, {}, OPENAI_FINISH[job.result.finish_reason])
        if request.include_usage:
            yield chat_chunk(name, ident, None, result=job.result)

    return event_stream(chunks(), job.cancel, done="[DONE]", waiting=job.waiting)
