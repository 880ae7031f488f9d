"""Property-based fuzzing of every JSON route from our own OpenAPI document (schemathesis), against the
real server: no input gets a 5xx, and every answer matches the documented status codes, content type and
schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kilo_bridge.config import Settings

# schemathesis.specs.openapi.schemas is imported above, at collection, not lazily inside the test: pytest
# rewrites schemathesis's modules (it is a pytest plugin), and CPython 3.11.7's AST builder can fail
# ("recursion depth mismatch") when another thread changes the recursion limit mid-rewrite.

pytestmark = pytest.mark.slow
# Event streams (and file downloads) are not JSON; their error answers are covered by the route tests.
SKIP_PATHS = ["/api/kilo/generate-stream", "/api/kilo/job/{id}/logs", "/api/kilo/job/{id}/artifacts/{name}"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_input_gets_a_server_error_or_an_undocumented_answer(
    serve: Callable[..., str], job_settings: Callable[..., Settings]
) -> None:
    url = serve(job_settings(jobs_concurrency=0, admin_api_key="admin-key-not-real-0123456789"))
    schema = schemathesis.openapi.from_url(f"{url}/api/kilo/openapi.json")  # base URL: where it was loaded
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), "an operation of the schema failed to load"
        operation = result.ok()
        if operation.path in SKIP_PATHS:
            continue
        tested += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert tested >= 15
    assert not failures, "\n\n".join(failures)
