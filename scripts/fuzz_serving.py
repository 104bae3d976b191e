"""Property-based fuzzing of a live `textsvc serve` from its own OpenAPI document (/openapi.json), with schemathesis.

Every operation gets `--cases` generated requests, half that fit the document (positive) and half that break it
(negative: wrong types, missing fields, out-of-range values), checked for: no 5xx (`not_a_server_error`), every
status documented (`status_code_conformance`), every Content-Type documented (`content_type_conformance`), and every
body valid against its documented schema (`response_schema_conformance`). Prints counts per operation and the first
failure of each kind; exits 1 when any check failed.

    python scripts/fuzz_serving.py --cases 5000             # tiny models trained on the spot
    python scripts/fuzz_serving.py --models_dir models       # or a folder of your own
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import hypothesis
import requests
import schemathesis
import serving_process
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# long generations would only slow the run: their bounds are fuzzed all the same, below the cap
SERVE_FLAGS = ["--device", "cpu", "--max_new_tokens_limit", "64", "--request_timeout_s", "30"]
ADMIN_KEY = "fuzz-admin"  # so that /admin/reload does its work too, not only refuse
# a chat template for generators that lack one (the tiny ones do), so that /v1/chat/completions answers too
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models_dir", help="models to serve (default: tiny ones trained now, in a temp folder)")
    parser.add_argument("--cases", type=int, default=5000, help="generated requests in all, spread over operations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="fuzz a server already running at this base URL instead of starting one")
    return parser.parse_args()


def fuzz_operation(operation, base_url: str, examples: int, mode, seed: int, session: requests.Session,
                   tally: dict, path_parameters: dict | None = None) -> None:
    """`examples` cases of one operation in `mode`; each response's status and failed checks added to `tally`."""

    @hypothesis.given(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                         phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.seed(seed)
    def run(case) -> None:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"} if operation.path.startswith("/admin/") else None
        response = case.call(base_url=base_url, session=session, headers=admin, timeout=60)
        tally["cases"] += 1
        tally["statuses"][response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally["failures"][failure.title] += 1
                tally["examples"].setdefault(failure.title, f"{case.as_curl_command()}\n  -> {response.status_code} "
                                                            f"{response.text[:300]!r}\n  {failure.message[:400]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to negate: an operation without parameters or body
        pass


def fuzz(base_url: str, cases: int, seed: int = 0, per_operation: int = 26) -> dict[str, dict]:
    """Fuzz every operation of the server at `base_url` in rounds of `per_operation` cases per operation and mode,
    each round with a new seed, until `cases` were sent; per operation label: cases, statuses, failures. Every
    other round names served models in the paths (random names only ever find 404)."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    names = [model["name"] for model in session_get(base_url + "/models")["models"]]
    report = {op.label: {"cases": 0, "statuses": Counter(), "failures": Counter(), "examples": {}} for op in operations}
    session, round_number = requests.Session(), 0
    while sum(tally["cases"] for tally in report.values()) < cases:
        for operation in operations:
            named = round_number % 2 and "{name}" in operation.path
            fixed = {"name": names[round_number // 2 % len(names)]} if named else None
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                fuzz_operation(operation, base_url, per_operation, mode, seed + round_number, session,
                               report[operation.label], fixed)
        round_number += 1
    return report


def session_get(url: str) -> dict:
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return response.json()


def print_report(report: dict[str, dict], wall_s: float) -> None:
    total = defaultdict(int)
    for label, tally in report.items():
        total["cases"] += tally["cases"]
        total["5xx"] += sum(n for status, n in tally["statuses"].items() if status >= 500)
        total["failures"] += sum(tally["failures"].values())
        print(f"{label:40} cases {tally['cases']:5}  statuses {dict(sorted(tally['statuses'].items()))}  "
              f"failures {dict(tally['failures']) or 0}")
        for title, example in tally["examples"].items():
            print(f"    {title}: {example}")
    print(json.dumps({**total, "operations": len(report), "wall_s": round(wall_s, 1),
                      "schemathesis": schemathesis.__version__}))


def main() -> None:
    args = parse_args()
    started, process = time.perf_counter(), None
    if args.url:
        base = args.url
    else:
        models = Path(args.models_dir) if args.models_dir else serving_process.train_tiny_models(
            Path(tempfile.mkdtemp(prefix="textsvc-fuzz-")))
        template = Path(tempfile.mkdtemp(prefix="textsvc-fuzz-")) / "chat.jinja"
        template.write_text(CHAT_TEMPLATE, encoding="utf-8")
        base, process = serving_process.start_textsvc(models, [*SERVE_FLAGS, "--chat_template", str(template)],
                                                      env={"TEXTSVC_ADMIN_KEYS": ADMIN_KEY})
    try:
        report = fuzz(base, args.cases, args.seed)
    finally:
        if process:
            serving_process.stop(process)
    print_report(report, time.perf_counter() - started)
    raise SystemExit(1 if any(tally["failures"] for tally in report.values()) else 0)


if __name__ == "__main__":
    main()
