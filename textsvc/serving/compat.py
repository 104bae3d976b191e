"""TGI's and TEI's small routes, so that their clients work unchanged: `GET /info` (TGI's shape for a generator,
TEI's for a classifier), `POST /tokenize`, and TEI's classification route `POST /predict` (an alias of /classify)."""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify, request

import textsvc
from textsvc.errors import ErrorCode, RequestError
from textsvc.loading import context_length
from textsvc.serving.engine import ServedClassifier, ServedGenerator
from textsvc.serving.guard import admit_inference, release_inference
from textsvc.serving.http import current_engine, json_body
from textsvc.serving.requests import parse_classify, text_inputs
from textsvc.serving.timing import record_classification

compat = Blueprint("compat", __name__)
compat.before_request(admit_inference)  # keys, shutdown refusal and per-key limits, as on /classify
compat.after_request(release_inference)


def _served(name: str | None) -> ServedClassifier | ServedGenerator:
    """The named model, else the default generator, else the default classifier."""
    engine = current_engine()
    if name is not None:
        return engine.model(name)
    try:
        return engine.model(None, "generator")
    except RequestError:
        return engine.model(None, "classifier")


def tgi_info(served: ServedGenerator) -> dict:
    """TGI's /info for a generator."""
    config, loaded = current_engine().config, served.loaded
    total = context_length(loaded.model) or loaded.block_size  # the LSTM has no limit: its training window
    return {"model_id": served.name, "model_sha": None, "model_dtype": str(loaded.model.dtype).removeprefix("torch."),
            "model_device_type": loaded.device.type, "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": served.worker.max_batch_size + config.max_queue_size,
            "max_best_of": 1, "max_stop_sequences": 16, "max_input_tokens": max(total - 1, 1),
            "max_total_tokens": total, "max_new_tokens_limit": config.max_new_tokens_limit,
            "max_client_batch_size": 1, "router": "textsvc", "version": textsvc.__version__, "sha": None,
            "docker_label": None}


def tei_info(served: ServedClassifier) -> dict:
    """TEI's /info for a classifier."""
    config, loaded = current_engine().config, served.loaded
    model_config = loaded.model.config
    return {"model_id": served.name, "model_sha": None, "model_dtype": str(loaded.model.dtype).removeprefix("torch."),
            "model_type": {"classifier": {"id2label": {str(k): v for k, v in model_config.id2label.items()},
                                          "label2id": dict(model_config.label2id)}},
            "max_concurrent_requests": config.max_queue_size, "max_input_length": loaded.max_length,
            # an integer, as TEI's clients read it: without a token budget, the count cap times the input limit
            "max_batch_tokens": served.batcher.max_batch_tokens or config.max_batch_size * loaded.max_length,
            "max_batch_requests": config.max_batch_size,
            "max_client_batch_size": config.max_inputs, "tokenization_workers": None,
            "version": textsvc.__version__, "sha": None, "docker_label": None}


@compat.get("/info")
def info():
    served = _served(request.args.get("model"))
    return jsonify(tgi_info(served) if served.kind == "generator" else tei_info(served))


def _tokens(tokenizer, text: str, add_special_tokens: bool) -> list[dict]:
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                         return_special_tokens_mask=True, verbose=False)
    return [{"id": token, "text": text[start:stop] if not special else tokenizer.convert_ids_to_tokens(token),
             "special": bool(special), "start": start, "stop": stop}
            for token, (start, stop), special in zip(encoding["input_ids"], encoding["offset_mapping"],
                                                     encoding["special_tokens_mask"], strict=True)]


@compat.post("/tokenize")
def tokenize():
    """TGI's tokens of one prompt (a flat list) for generators; TEI's list per text for classifiers."""
    body = json_body()
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code=ErrorCode.INVALID_TYPE)
    given, name = body.get("inputs"), body.get("model")
    texts = text_inputs(given)
    special = body.get("add_special_tokens", True)
    if not isinstance(special, bool) or name is not None and not isinstance(name, str):
        raise RequestError("add_special_tokens: expected true or false; model: text", field="add_special_tokens")
    served = _served(name)
    tokenizer = served.loaded.tokenizer
    if served.kind == "generator" and isinstance(given, str):
        return jsonify(_tokens(tokenizer, given, special))
    return jsonify([_tokens(tokenizer, text, special) for text in texts])


@compat.post("/predict")
def predict():
    """TEI's classification: `{"inputs": str | [str], "truncate", "raw_scores"}`; one text answers a flat list."""
    body = json_body()
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code=ErrorCode.INVALID_TYPE)
    inputs = body.get("inputs")
    if isinstance(inputs, list) and any(isinstance(item, list) for item in inputs):
        raise RequestError("inputs: text pairs are not supported", code=ErrorCode.INVALID_TYPE, field="inputs")
    options = {"truncate": body.get("truncate", False), "raw_scores": body.get("raw_scores", False)}
    for field, value in options.items():
        if not isinstance(value, bool):
            raise RequestError(f"{field}: expected true or false", field=field)
    parameters = {"truncation": options["truncate"], **({"function_to_apply": "none"} if options["raw_scores"] else {})}
    engine = current_engine()  # then the same checks as /classify
    parsed = parse_classify({"inputs": inputs, "model": body.get("model"), "parameters": parameters}, engine.config)
    submitted, timing = time.perf_counter(), {}
    scores = engine.classify(**parsed.arguments, deadline=g.get("deadline"), timing=timing)
    record_classification(submitted, timing)
    return jsonify(scores[0] if isinstance(inputs, str) else scores)
