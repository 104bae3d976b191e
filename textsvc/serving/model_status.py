"""What the engine knows about each model directory beside the loaded models: its version on disk, why it failed
to load (in words safe to show a client), and whether the set that is up makes the replica ready."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from textsvc.config.serving import ServingConfig
from textsvc.errors import ErrorCode, TextsvcError

# an absolute path of two parts or more (POSIX or Windows): never shown to a client
ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-@+~ ]+){2,}[\\/]?")
MAX_MESSAGE_CHARS = 300


def fingerprint(path: Path) -> tuple:
    """The directory's version: its files' names, sizes and modification times (a rename into place changes it)."""
    return tuple(sorted((entry.name, stat.st_size, stat.st_mtime_ns)
                        for entry in path.iterdir() if entry.is_file() for stat in (entry.stat(),)))


def public_error(error: BaseException, name: str, path: Path, kind: str | None) -> dict:
    """A load failure as /ready and /models report it: the code (`load_failed` unless the error names its own), the
    kind when known, and a one-line message with every file system path taken out."""
    code = error.code if isinstance(error, TextsvcError) else ErrorCode.LOAD_FAILED
    message = (error.message if isinstance(error, TextsvcError) else f"{type(error).__name__}: {error}")
    for prefix in (str(path), str(path.parent)):
        message = message.replace(prefix, name if prefix == str(path) else "models_dir")
    message = ABSOLUTE_PATH.sub("<path>", " ".join(message.split()))[:MAX_MESSAGE_CHARS]
    return {"name": name, "kind": kind, "status": "failed", "error": {"code": str(code), "message": message}}


def readiness_gaps(config: ServingConfig, up: Mapping[str, str], failed: Mapping[str, str | None]) -> list[str]:
    """Why the replica is not ready ([] when it is), given the kinds of the models up and of those that failed.

    Ready when at least one model is up, every configured default is up, and at least one model of each kind
    found is up; with `require_all_models`, when nothing failed.
    """
    gaps = [] if up else ["no model is up"]
    if config.require_all_models and failed:
        gaps.append(f"failed: {', '.join(sorted(failed))} (require_all_models)")
    for kind, default in (("classifier", config.default_classifier), ("generator", config.default_generator)):
        if default is not None and default not in up:
            gaps.append(f"the default {kind} {default} is not up")
        if kind in failed.values() and kind not in up.values():
            gaps.append(f"no {kind} is up")
    return gaps
