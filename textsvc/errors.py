"""Error classes, each with a stable machine-readable code and the HTTP status it maps to."""

from __future__ import annotations


class TextsvcError(Exception):
    """Base error: `code` is stable and documented, `message` is for people."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class ConfigError(TextsvcError):
    """A configuration value (flag, config file key, request parameter) is invalid."""

    code = "invalid_config"


class DataError(TextsvcError):
    """A data set cannot be used: missing or unreadable file, unknown column, empty split, bad values."""

    code = "invalid_data"


class ModelDirError(TextsvcError):
    """A model directory is missing, incomplete, or not in the safetensors format."""

    code = "invalid_model_dir"
    http_status = 500


class RequestError(TextsvcError):
    """A request the service cannot serve as sent: bad JSON, wrong types, limits exceeded, unknown model."""

    code = "invalid_parameter"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, http_status: int = 400):
        super().__init__(message, code=code, field=field)
        self.http_status = http_status


class OverloadedError(TextsvcError):
    """Too many requests already wait for a model, or the models are still loading: retry later (503)."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: int = 1):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
