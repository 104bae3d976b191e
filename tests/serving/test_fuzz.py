"""Property-based fuzzing of a live `textsvc serve` from its own /openapi.json (schemathesis): requests that fit
the document and requests that break it; no answer may be a 5xx, or carry a status, Content-Type or body that the
document does not describe. scripts/fuzz_serving.py runs the same checks over thousands of cases."""

from __future__ import annotations

import json
import urllib.request

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_serve import running_server

from textsvc.config.serving import ServingConfig
from textsvc.serving.openapi import openapi_document

from conftest import CHAT_TEMPLATE

pytestmark = pytest.mark.slow
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMIN_KEY = "fuzz-admin"


@pytest.fixture(scope="module")
def fuzzed_url(models_dir, tmp_path_factory):
    template = tmp_path_factory.mktemp("fuzz") / "chat.jinja"
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    with running_server(models_dir, "--max_new_tokens_limit", str(CAP), "--chat_template", str(template),
                        "--default_classifier", "sentiment-lstm", "--default_generator", "tiny-gpt",
                        env={"TEXTSVC_ADMIN_KEYS": ADMIN_KEY}) as (url, _):
        yield url


# the document is built from the code, so the cases can be collected before the server starts (schemathesis's
# lazy `from_fixture` needs pytest's `_nodeid`, which pytest 9 removed); the first test checks it is the served one
CAP = 16
DOCUMENT = openapi_document(ServingConfig(max_new_tokens_limit=CAP))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_fuzzed_document_is_the_served_one(fuzzed_url):
    with urllib.request.urlopen(fuzzed_url + "/openapi.json") as response:
        assert json.loads(response.read()) == json.loads(json.dumps(DOCUMENT))


@schema.parametrize()
@hypothesis.settings(max_examples=8, deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_every_answer_is_documented(case, fuzzed_url):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"} if case.operation.path.startswith("/admin/") else None
    case.call_and_validate(base_url=fuzzed_url, headers=admin, checks=CHECKS, timeout=60)
