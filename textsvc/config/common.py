"""Configuration machinery: read a config file, check values against dataclass fields, split them across configs.

Flags and config-file keys share the dataclass field names (which follow the Hugging Face example
scripts), so `--learning_rate 3e-4` and `learning_rate = 3e-4` in a TOML file mean the same thing.
The dataclasses themselves live beside this module, one module per concern: training, sampling, serving.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from textsvc.errors import ConfigError, ErrorCode


def setting(default: Any, help: str, **schema: Any) -> Any:
    """A dataclass field whose CLI help is `metadata["help"]`, the form `transformers.HfArgumentParser` reads; its
    bounds, JSON Schema keywords (`minimum=0`, `maxItems=16`), go to `metadata["schema"]` for `check_range` and the
    OpenAPI document."""
    return dataclasses.field(default=default, metadata={"help": help, **({"schema": schema} if schema else {})})


RANGE_CHECKS = {  # JSON Schema keyword: (holds(value, bound), the message)
    "minimum": (operator.ge, "must be >= {}"),
    "exclusiveMinimum": (operator.gt, "must be > {}"),
    "maximum": (operator.le, "must be <= {}"),
    "exclusiveMaximum": (operator.lt, "must be < {}"),
    "minLength": (lambda value, bound: len(value) >= bound, "must not be shorter than {} characters"),
    "maxItems": (lambda value, bound: len(value) <= bound, "must have at most {} items"),
    "enum": (lambda value, bound: value in bound, "must be one of {}"),
}


def check_range(name: str, value: Any, schema: dict[str, Any]) -> None:
    """Refuse a value outside its field's JSON Schema bounds, naming the field (null, where allowed, is no value)."""
    if value is None:
        return
    require(not isinstance(value, float) or math.isfinite(value), name, "must be a finite number")
    for keyword, bound in schema.items():
        if keyword == "items":
            for item in value:
                check_range(name, item, bound)
        elif keyword in RANGE_CHECKS:
            holds, message = RANGE_CHECKS[keyword]
            require(holds(value, bound), name, message.format(bound))


def require(condition: bool, field: str, message: str) -> None:
    """Refuse a setting with a message that names its field."""
    if not condition:
        raise ConfigError(f"{field}: {message}", field=field)


def as_names(value: Any) -> Any:
    """A list of names, or comma-separated text as a flag gives it, as a tuple; anything else unchanged."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(","))
    return value


def names_as_tuple(config: Any, field: str) -> None:
    """Give Python callers of a frozen config what `build_configs` gives the CLI (a bare string would otherwise be
    read as one name per character)."""
    object.__setattr__(config, field, as_names(getattr(config, field)))


def read_config_file(path: str) -> dict[str, Any]:
    """Read a flat JSON or TOML file of field names to values."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror}", code=ErrorCode.CONFIG_FILE_UNREADABLE) from error
    try:
        values = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path}: {error}", code=ErrorCode.CONFIG_FILE_UNREADABLE) from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a table of field names", code=ErrorCode.CONFIG_FILE_UNREADABLE)
    return values


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's field types, resolved once per class: `typing.get_type_hints` evaluates every annotation string
    again on each call, and request checks run per request (a fifth of the GIL's busy time in a 64-stream profile)."""
    return typing.get_type_hints(cls)


def build_configs(values: dict[str, Any], *classes: type) -> tuple:
    """Split one flat mapping of field values across `classes`; unknown keys are an error."""
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}", code=ErrorCode.UNKNOWN_SETTING, field=unknown[0])
    built = []
    for cls in classes:
        fields, hints = {f.name: f for f in dataclasses.fields(cls)}, field_types(cls)
        kwargs = {name: coerce(values[name], fields[name], hints[name]) for name in fields if name in values}
        try:
            built.append(cls(**kwargs))
        except TypeError as error:
            raise ConfigError(str(error)) from error
    return tuple(built)


def coerce(value: Any, field: dataclasses.Field, hint: Any) -> Any:
    """Check a value against its field's type (so a bad one names the field); lists become tuples."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)  # `float | None`: both
    if value is None and type(None) in kinds:
        return value
    base = kinds[0]
    if typing.get_origin(base) is tuple:  # label names: a list, or comma-separated text from a flag
        if isinstance(value, (list, tuple, str)):
            return as_names(value)
        raise ConfigError(f"{field.name}: expected a list of names, got {value!r}", field=field.name)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{field.name}: expected true or false, got {value!r}", field=field.name)
    if base in (int, float) and (isinstance(value, bool) or not isinstance(value, int if base is int else (int, float))):
        raise ConfigError(f"{field.name}: expected {'an integer' if base is int else 'a number'}, got {value!r}",
                          field=field.name)
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{field.name}: expected text, got {value!r}", field=field.name)
    return value
