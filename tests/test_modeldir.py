"""The model directory is written atomically and checked before loading."""

from __future__ import annotations

import pytest

from textsvc.errors import ModelDirError
from textsvc.modeldir import check_model_dir, write_model_dir


class WriteFailed(Exception):
    pass


def test_failed_write_leaves_nothing(tmp_path):
    def write(staging):
        (staging / "config.json").write_text("{}")
        raise WriteFailed

    with pytest.raises(WriteFailed):
        write_model_dir(tmp_path / "model", write)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_existing_dir(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def write(staging):
        raise WriteFailed

    with pytest.raises(WriteFailed):
        write_model_dir(target, write)
    assert [path.name for path in tmp_path.iterdir()] == ["model"]
    assert (target / "old.txt").read_text() == "old"


def test_write_creates_and_replaces(tmp_path):
    target = tmp_path / "nested" / "model"
    assert write_model_dir(target, lambda staging: (staging / "a.txt").write_text("first")) == target.resolve()
    write_model_dir(target, lambda staging: (staging / "b.txt").write_text("second"))
    assert [path.name for path in target.iterdir()] == ["b.txt"]
    assert (target / "b.txt").read_text() == "second"
    assert [path.name for path in target.parent.iterdir()] == ["model"]  # no staging or retired folders


def test_check_model_dir(tmp_path):
    with pytest.raises(ModelDirError) as error:
        check_model_dir(tmp_path / "absent")
    assert error.value.code == "model_not_found"
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelDirError) as error:
        check_model_dir(tmp_path)
    assert error.value.code == "incomplete_model_dir"
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert check_model_dir(tmp_path) == tmp_path
