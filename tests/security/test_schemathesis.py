"""Property-based fuzzing of every JSON route from our own OpenAPI document (schemathesis), against the
real server: no input gets a 5xx, and every answer matches the documented status codes, content type and
schema; and no request the document says is valid is refused as invalid (the document states the rules the
validators enforce)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
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
MAX_EXAMPLES = 25
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
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except (Exception, FailureGroup) as exc:  # every operation's failures, reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert tested >= 15
    assert not failures, "\n\n".join(failures)


ADMIN_KEY = "admin-key-not-real-0123456789"
# Refusals for a reason other than the request's form, each documented in the operation's responses: no or a
# wrong key, a budget, an id that does not exist, a conflict, a rate limit, an outage (and below: a body over
# MAX_BODY_BYTES, whose bytes a schema does not count).
NOT_INVALID = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]
# The rules the document states in words (a description), not as schema: what exists (a saved profile), what a
# cron expression means, a trigger template's placeholders, the total size of a job's variables. Each is
# (field, words of the refusal, words of the document that state the rule).
IN_WORDS: dict[str, list[tuple[str, str, str]]] = {
    "POST /api/kilo/generate": [("prompt", "together at most", "together at most MAX_PROMPT_CHARS characters")],
    "POST /api/kilo/run-agent": [
        ("profile", "no such profile", "A saved profile"),
        ("profileEnv", "characters in all", "Names and values together: at most 64,000 characters."),
        ("deploy.command", "required for the deploy agent", "needs `deploy.command` or a `profile`"),
    ],
    "POST /api/kilo/schedules": [
        ("cron", "", "at most one run every 10 minutes"),
        ("run.profile", "no such profile", "A saved profile of this key."),
    ],
    "POST /api/kilo/triggers": [
        ("promptTemplate", "only {{ body.field.path }} is allowed", "only `{{ body.path.to.field }}`"),
        ("profile", "no such profile", "A saved profile of this key."),
    ],
    "POST /api/kilo/profiles": [("profileEnv", "characters in all", "Names and values together")],
    "PUT /api/kilo/profiles/{name}": [("profileEnv", "characters in all", "Names and values together")],
}

# Fields only the words rule: set to a valid value, so that the rest of the body is explored past them.
VALID_IN_WORDS = {"POST /api/kilo/schedules": {"cron": "17 3 * * 1"}}


def _with_valid(case: Case[Any]) -> Case[Any]:
    fixed = VALID_IN_WORDS.get(f"{case.method.upper()} {case.operation.path}")
    if fixed and isinstance(case.body, dict):
        case.body.update(fixed)
    return case


def _code(response: Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _problems(response: Response) -> list[tuple[str, str]]:
    """(field, message) of each problem an `invalid_request` answer names."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return [("", response.text[:200])]
    details = error.get("details") or []
    if details:
        return [(str(d.get("field", "")), str(d.get("message", ""))) for d in details]
    field, _, message = str(error.get("message", "")).partition(": ")
    return [(field, message)]


def accepts_valid_requests(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """schemathesis's `positive_data_acceptance`, except for a refusal by a rule the document states in words."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 413 and _code(response) == "payload_too_large":
            return None
        in_words = IN_WORDS.get(f"{case.method.upper()} {case.operation.path}", [])
        stated = [(f, words) for f, words, _ in in_words]
        problems = _problems(response)
        if response.status_code in (413, 422) and all(
            any(field == f and words in message for f, words in stated) for field, message in problems
        ):
            return None
        raise


def test_the_document_states_every_rule_the_validators_enforce(
    serve: Callable[..., str], job_settings: Callable[..., Settings]
) -> None:
    """Every request the document says is valid (schemathesis's positive data) is taken, or refused for a
    documented reason that is not its form; the rules stated in words are in the document."""
    url = serve(job_settings(jobs_concurrency=0, admin_api_key=ADMIN_KEY, repo_allow_local=False))
    config = SchemathesisConfig.from_dict({"checks": {"positive_data_acceptance": {"expected-statuses": NOT_INVALID}}})
    schema = schemathesis.openapi.from_url(f"{url}/api/kilo/openapi.json", config=config)
    text = str(schema.raw_schema)
    for rules in IN_WORDS.values():
        for _field, _refusal, words in rules:
            assert words in text, words
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), "an operation of the schema failed to load"
        operation = result.ok()
        if operation.path in SKIP_PATHS:
            continue
        tested += 1

        @given(case=operation.as_strategy().map(_with_valid))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            # The admin key opens the admin routes; an open server ignores it on the others.
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=[accepts_valid_requests])

        try:
            fuzz()
        except (Exception, FailureGroup) as exc:  # every operation's failures, reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert tested >= 15
    assert not failures, "\n\n".join(failures)
