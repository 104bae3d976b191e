"""`import textsvc` stays cheap, and registers textsvc's architectures with the transformers Auto classes."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_does_not_import_torch():
    result = run_python("import textsvc, sys; assert 'torch' not in sys.modules")
    assert result.returncode == 0, result.stderr


def test_fresh_process_loads_lstm_with_auto_class(lstm_dir):
    result = run_python(
        "import textsvc\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(lstm_dir)!r})\n"
        "print(type(model).__name__, model.config.id2label[1])\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["LSTMForSequenceClassification", "pos"]
