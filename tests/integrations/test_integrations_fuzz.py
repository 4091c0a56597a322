"""Property-based fuzzing of /api/v1 with schemathesis, driven by the served OpenAPI document.

Bounded (25 examples per operation and mode) so CI runs it in well under a minute. The
properties: whatever the client sends, valid or not, the answer is never a 5xx; and every
answer matches what the document promises (status codes, content types, response schemas).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_fuzzing_finds_no_server_error(
    app: Flask, auth: dict[str, str], mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /invoices", "GET /invoices", "POST /invoices/{invoice_id}/mark"} <= labels
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    for operation in operations:
        spec = document["paths"][operation.path][operation.method.lower()]
        if mode is GenerationMode.NEGATIVE and not ("parameters" in spec or "requestBody" in spec):
            continue  # nothing to make invalid: no parameters, no body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # A valid key on every request, so the fuzzing reaches past authentication.
            headers = {**(case.headers or {}), **auth}
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
