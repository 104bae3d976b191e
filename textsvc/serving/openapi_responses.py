"""What each route answers with 200, as JSON Schema for /openapi.json: the shapes that `routes.py`, `compat.py`,
`chat.py` and `admin.py` build, kept here beside each other so that a fuzzer can hold the server to them."""

from __future__ import annotations

from textsvc.serving.requests import OPENAI_FINISH, TGI_FINISH

STRING, INTEGER, NUMBER, BOOLEAN = ({"type": name} for name in ("string", "integer", "number", "boolean"))
OPTIONAL_STRING = {"type": ["string", "null"]}
NAMES = {"type": "array", "items": STRING}


def obj(properties: dict, required: list[str] | None = None) -> dict:
    """An object with `properties`, all required unless `required` says which; other names may follow."""
    return {"type": "object", "required": list(properties) if required is None else required,
            "properties": properties}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


LABEL_SCORES = array(obj({"label": STRING, "score": NUMBER}))  # one text's labels, best first
TOKENS = array(obj({"id": INTEGER, "text": STRING, "special": BOOLEAN, "start": INTEGER, "stop": INTEGER}))
TOKEN = obj({"id": INTEGER, "text": STRING, "logprob": {"type": ["number", "null"]}, "special": BOOLEAN})
TGI_DETAILS = obj({"finish_reason": {"enum": sorted(set(TGI_FINISH.values()))}, "generated_tokens": INTEGER,
                   "seed": {"type": ["integer", "null"]}, "prefill": array({}), "tokens": array(TOKEN)},
                  required=["finish_reason", "generated_tokens"])
USAGE = obj({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER})
FINISH = {"enum": sorted(set(OPENAI_FINISH.values()))}
FINISH_OR_NONE = {"anyOf": [FINISH, {"type": "null"}]}  # a stream's chunks before the last
MODEL_ERROR = obj({"code": STRING, "message": STRING})
MODEL = obj({"name": STRING, "kind": {"enum": ["classifier", "generator"]}, "status": {"enum": ["ready", "failed"]},
             "error": MODEL_ERROR}, required=["name", "kind"])

OK = {
    "classify": array(LABEL_SCORES),  # a list per text, a string being one text
    "predict": {"anyOf": [LABEL_SCORES, array(LABEL_SCORES)]},  # TEI: one text answers a flat list
    "tokenize": {"anyOf": [TOKENS, array(TOKENS)]},  # TGI: a generator's prompt a flat list; TEI: a list per text
    "generate": obj({"generated_text": STRING, "details": TGI_DETAILS}, required=["generated_text"]),
    "completion": obj({"id": STRING, "object": {"const": "text_completion"}, "created": INTEGER, "model": STRING,
                       "choices": array(obj({"text": STRING, "index": INTEGER, "logprobs": {"type": "null"},
                                             "finish_reason": FINISH})), "usage": USAGE}),
    "chat": obj({"id": STRING, "object": {"const": "chat.completion"}, "created": INTEGER, "model": STRING,
                 "choices": array(obj({"index": INTEGER, "message": obj({"role": {"const": "assistant"},
                                                                        "content": STRING}),
                                       "logprobs": {"type": ["object", "null"]}, "finish_reason": FINISH})),
                 "usage": USAGE}, required=["id", "object", "created", "model", "choices", "usage"]),
    "openai_models": obj({"object": {"const": "list"}, "data": array(obj({"id": STRING, "object": {"const": "model"},
                                                                          "created": INTEGER, "owned_by": STRING}))}),
    "info": obj({"model_id": STRING, "model_dtype": STRING, "max_concurrent_requests": INTEGER, "version": STRING}),
    "models": obj({"models": array(MODEL)}),
    "model": MODEL,
    "card": obj({"name": STRING, "metadata": {"type": "object"}, "markdown": STRING}),
    "health": obj({"status": {"const": "ok"}}),
    "ready": obj({"status": {"const": "ready"}, "models": INTEGER, "ready": NAMES, "failed": array(MODEL)},
                 required=["status", "models"]),
    "reload": obj({**{change: NAMES for change in ("added", "replaced", "removed", "failed", "unchanged")},
                   "ready": BOOLEAN, "failures": array(MODEL)}),
    "document": obj({"openapi": STRING, "info": {"type": "object"}, "paths": {"type": "object"}}),
}


def events(data: dict, done: bool = False) -> dict:
    """A server-sent event whose `data` is JSON valid against `data` (or, with `done`, OpenAI's closing [DONE])."""
    json_data = {"type": "string", "contentMediaType": "application/json", "contentSchema": data}
    return obj({"data": {"anyOf": [{"const": "[DONE]"}, json_data]} if done else json_data}, required=["data"])


# each stream's events: its chunks, or the error that ends it, in the route's error shape
EVENTS = {
    "tgi": events({"anyOf": [obj({"token": TOKEN, "generated_text": OPTIONAL_STRING,
                                  "details": {"anyOf": [TGI_DETAILS, {"type": "null"}]}}),
                             {"$ref": "#/components/schemas/TgiError"}]}),
    "completion": events({"anyOf": [obj({"id": STRING, "object": {"const": "text_completion"}, "model": STRING,
                                         "choices": array(obj({"text": STRING, "index": INTEGER,
                                                               "finish_reason": FINISH_OR_NONE}))},
                                        required=["id", "object", "model", "choices"]),
                                    {"$ref": "#/components/schemas/OpenAIError"}]}, done=True),
    "chat": events({"anyOf": [obj({"id": STRING, "object": {"const": "chat.completion.chunk"}, "model": STRING,
                                   "choices": array(obj({"index": INTEGER, "delta": obj(
                                       {"role": {"const": "assistant"}, "content": STRING}, required=[]),
                                       "finish_reason": FINISH_OR_NONE})),
                                   "usage": USAGE}, required=["id", "object", "model", "choices"]),
                              {"$ref": "#/components/schemas/OpenAIError"}]}, done=True),
}

# The two request bodies that compat.py reads by hand (TEI's and TGI's shapes, not a dataclass of requests.py)
TOKENIZE_REQUEST = {"title": "TokenizeRequest", **obj({"inputs": {"anyOf": [STRING, NAMES]}, "model": STRING,
                                                     "add_special_tokens": BOOLEAN}, required=["inputs"])}
PREDICT_REQUEST = {"title": "PredictRequest", **obj({"inputs": {"anyOf": [STRING, NAMES]}, "model": STRING,
                                                   "truncate": BOOLEAN, "raw_scores": BOOLEAN}, required=["inputs"])}
