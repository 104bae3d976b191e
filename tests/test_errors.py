"""The error registry: each code written once in textsvc, its status carried by its errors, the README's tables
generated from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from textsvc.errors import CLI, HTTP, ConfigError, DataError, ErrorCode, OverloadedError, RequestError, error_body

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "textsvc" / "errors.py"
TABLE_HEADS = {HTTP: ("| code | status | when |", "|---|---|---|"), CLI: ("| code | meaning |", "|---|---|")}


def expected_table(surface: str) -> str:
    """The README table of `surface`'s codes, as the registry says it (paste it into the README when it changes)."""
    rows = []
    for code in (code for code in ErrorCode if code.surface == surface):
        status = [str(code.http_status or "its own")] if surface == HTTP else []
        rows.append("| " + " | ".join([f"`{code.value}`", *status, code.meaning]) + " |")
    return "\n".join([*TABLE_HEADS[surface], *rows])


def readme_table(surface: str) -> str:
    """The table in README.md that starts with `surface`'s head."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(TABLE_HEADS[surface][0])
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("surface", [HTTP, CLI])
def test_readme_tables_list_exactly_the_registered_codes(surface):
    expected = expected_table(surface)
    assert readme_table(surface) == expected, f"README.md's table should read:\n{expected}"


def test_no_code_is_written_as_a_string_outside_the_registry():
    codes = {code.value for code in ErrorCode}
    found = []
    for path in sorted((ROOT / "textsvc").rglob("*.py")):
        if path == REGISTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in codes:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "use ErrorCode's constants:\n" + "\n".join(found)


def test_codes_are_unique_strings_with_a_status_and_a_meaning():
    assert len({code.value for code in ErrorCode}) == len(ErrorCode)
    for code in ErrorCode:
        assert code == code.value and f"{code}" == code.value and code.meaning and code.surface in (HTTP, CLI)
        assert code.http_status in (400, 401, 404, 405, 413, 415, 429, 500, 503, 504) or code is ErrorCode.HTTP_ERROR


def test_errors_carry_the_status_of_their_code():
    assert RequestError("x").code == "invalid_parameter" and RequestError("x").http_status == 400
    assert RequestError("x", code=ErrorCode.UNKNOWN_MODEL).http_status == 404
    assert RequestError("x", code=ErrorCode.UNAUTHORIZED).http_status == 401
    assert OverloadedError("x").http_status == 503
    assert OverloadedError("x", code=ErrorCode.NOT_READY).code == "not_ready"
    assert ConfigError("x", field="f").to_dict() == {"code": "invalid_config", "message": "x", "field": "f"}
    assert DataError("x", code=ErrorCode.EMPTY_SPLIT).code == "empty_split"
    with pytest.raises(ValueError):
        RequestError("x", code="no_such_code")  # a code must be registered
    with pytest.raises(AssertionError):
        DataError("x")  # data errors name their code


def test_error_bodies_in_each_api_shape():
    assert error_body("textsvc", ErrorCode.EMPTY_INPUT, "m", "inputs") == {
        "error": {"code": "empty_input", "message": "m", "field": "inputs"}}
    assert error_body("tgi", ErrorCode.OVERLOADED, "m") == {"error": "m", "error_type": "overloaded",
                                                            "code": "overloaded"}
    assert error_body("tgi", ErrorCode.INTERNAL_ERROR, "m")["error_type"] == "generation"
    assert error_body("tgi", ErrorCode.UNAUTHORIZED, "m")["error_type"] == "unauthorized"
    assert error_body("openai", ErrorCode.INVALID_PARAMETER, "m", "n") == {
        "error": {"message": "m", "type": "invalid_request_error", "param": "n", "code": "invalid_parameter"}}
    assert error_body("openai", ErrorCode.HTTP_ERROR, "m", status=502)["error"]["type"] == "server_error"
