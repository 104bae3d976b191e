"""The model directory format: written atomically, checked before loading, safetensors only."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from textsvc.errors import ErrorCode, ModelDirError

REQUIRED_FILES = ("config.json", "model.safetensors")


def write_model_dir(output_dir: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run `write(staging_dir)`, then move the finished directory to `output_dir` in one rename.

    A crash before the rename leaves only a hidden `.name.tmp-*` folder, never a directory that looks
    complete; an existing `output_dir` is replaced only once the new one is whole.
    """
    final = Path(output_dir).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        write(staging)
        _fsync_tree(staging)
        if final.exists():
            retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _fsync_tree(root: Path) -> None:
    """Flush every file to disk, readable by all (some writers create 0600 files), before the rename."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            path.chmod(0o644)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """Refuse a directory that is missing, incomplete, or carries weights in a pickle format only."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelDirError(f"{model_dir}: no such model directory", code=ErrorCode.MODEL_NOT_FOUND)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelDirError(f"{model_dir}: not a complete model directory (missing {', '.join(missing)}); "
                            "only safetensors weights are loaded", code=ErrorCode.INCOMPLETE_MODEL_DIR)
    return path


def replace_text(path: Path, text: str) -> None:
    """Write one file of a model directory in a single rename: readers see the old text or the new."""
    draft = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    draft.write_text(text, encoding="utf-8")
    os.replace(draft, path)


def read_json(path: Path) -> dict | None:
    """A JSON file's contents, or None if it is absent."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(path: Path, data: dict) -> None:
    """Pretty JSON with a trailing newline, the way `Trainer.save_metrics` writes it, in one rename."""
    replace_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
