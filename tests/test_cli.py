"""`textsvc evaluate` reports what training measured on the same file."""

from __future__ import annotations

import json

import pytest

from textsvc.cli import main

from conftest import write_rows


def test_evaluate_matches_test_results(model_dir, data_dir, capsys):
    assert main(["evaluate", "--model_dir", str(model_dir), "--test_file", str(data_dir / "test.csv"),
                 "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((model_dir / "test_results.json").read_text())
    assert report["accuracy"] == saved["accuracy"]
    assert report["per_class"] == saved["per_class"]
    assert report["confusion_matrix"] == saved["confusion_matrix"]
    assert report["loss"] == pytest.approx(saved["loss"], abs=1e-4)


def test_evaluate_accepts_other_formats_and_columns(lstm_dir, data_dir, tmp_path, capsys):
    rows = [line.rsplit(",", 1) for line in (data_dir / "test.csv").read_text().splitlines()[1:]]
    test_file = write_rows(tmp_path / "test.jsonl", [{"review": text, "y": int(label == "pos")} for text, label in rows])
    assert main(["evaluate", "--model_dir", str(lstm_dir), "--test_file", str(test_file),
                 "--text_column", "review", "--label_column", "y"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == json.loads((lstm_dir / "test_results.json").read_text())["accuracy"]


@pytest.mark.parametrize("rows, code", [
    ([{"text": "fine", "label": "neutral"}], "unseen_label"),
    ([{"text": 3, "label": "pos"}], "non_text_value"),
    ([{"body": "fine", "label": "pos", "extra": "x"}], "ambiguous_column"),
])
def test_evaluate_data_errors(lstm_dir, tmp_path, capsys, rows, code):
    test_file = write_rows(tmp_path / "test.jsonl", rows)
    assert main(["evaluate", "--model_dir", str(lstm_dir), "--test_file", str(test_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"textsvc: error [{code}]: ") and err.count("\n") == 1


def test_evaluate_missing_model_dir(tmp_path, data_dir, capsys):
    assert main(["evaluate", "--model_dir", str(tmp_path / "nope"), "--test_file", str(data_dir / "test.csv")]) == 2
    assert capsys.readouterr().err.startswith("textsvc: error [model_not_found]: ")
