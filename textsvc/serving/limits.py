"""The per-request limits of ServingConfig that parsing enforces before any work is done (body size is Flask's
MAX_CONTENT_LENGTH, `max_inputs` and `max_new_tokens_limit` live beside their fields)."""

from __future__ import annotations

from collections.abc import Sequence

from textsvc.config.serving import ServingConfig
from textsvc.errors import ErrorCode, RequestError


def check_texts(texts: Sequence[str], field: str, config: ServingConfig) -> None:
    """`input_too_long` for a text of more than `max_input_chars` characters."""
    for index, text in enumerate(texts):
        if len(text) > config.max_input_chars:
            where = f"{field}[{index}]" if len(texts) > 1 else field
            raise RequestError(f"{where}: {len(text)} characters, at most {config.max_input_chars}",
                               code=ErrorCode.INPUT_TOO_LONG, field=field)


def check_stops(stop: Sequence[str], config: ServingConfig) -> None:
    """`invalid_parameter` (field `stop`) past `max_stop_sequences` strings or `max_stop_chars` characters each."""
    if len(stop) > config.max_stop_sequences:
        raise RequestError(f"stop: {len(stop)} sequences, at most {config.max_stop_sequences}", field="stop")
    if any(len(sequence) > config.max_stop_chars for sequence in stop):
        raise RequestError(f"stop: a sequence longer than {config.max_stop_chars} characters", field="stop")
