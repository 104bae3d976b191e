"""What every training run shares, classifier or generator: where its checkpoints live and when to resume them."""

from __future__ import annotations

from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from textsvc.errors import ConfigError


def checkpoints_dir(output_dir: str) -> Path:
    """Where an unfinished run keeps its checkpoints: beside the model directory, never inside it."""
    final = Path(output_dir).resolve()
    return final.parent / f"{final.name}.checkpoints"


def resumable_checkpoint(run_dir: Path, resume: bool) -> str | None:
    """The checkpoint to continue from; an unfinished run is never silently restarted over."""
    last_checkpoint = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if last_checkpoint and not resume:
        raise ConfigError(f"resume: {run_dir} holds checkpoints of an unfinished run; pass --resume to "
                          "continue it, or delete that folder to start over", code="unfinished_run", field="resume")
    return last_checkpoint if resume else None
