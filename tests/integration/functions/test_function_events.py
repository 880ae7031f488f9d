"""Every function on every one of its events in events/, the way `make invoke FN=… EVENT=…` runs them
(no Docker), against the real Redis and the fake gateway. AWS calls themselves are in test_aws_jobs.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kilo_bridge.config import Settings, settings_env
from scripts.invoke import invoke
from tests.support import ROOT

EVENTS = sorted(p for d in ("dispatcher", "finalizer", "scheduled") for p in (ROOT / "events" / d).glob("*.json"))
EXPECTED: dict[str, Callable[[Any], bool]] = {
    # The sample job id is unknown here: nothing to dispatch, nothing to fail; the poison message is reported.
    "sqs-run-agent.json": lambda r: r == {"batchItemFailures": []},
    "sqs-redelivered-and-poison.json": lambda r: (
        r == {"batchItemFailures": [{"itemIdentifier": "5f1c3a5e-0000-4000-8000-000000000002"}]}
    ),
    # From the dead-letter queue (AGENT_DEAD_LETTER_QUEUE_ARN): the sample job is unknown here, nothing to fail.
    "sqs-dead-letter.json": lambda r: r == {"batchItemFailures": []},
    "task-stopped.json": lambda r: r == {"outcome": "unknown-job"},
    "refresh-credits.json": lambda r: r["balanceUsd"] == 12.5 and r["stale"] is False,
    "reap-jobs.json": lambda r: r == {"task": "reap-jobs", "ended": {}},
    "nightly-agent-run.json": lambda r: r["status"] == "queued" and r["jobId"].startswith("job_"),
    # A schedule made through the API, as Scheduler delivers it; the sample schedule is unknown here: skipped.
    "api-schedule-firing.json": lambda r: r == {"task": "run-agent", "jobId": None, "status": "skipped"},
}


def test_every_function_has_events() -> None:
    assert {p.parent.name for p in EVENTS} == {"dispatcher", "finalizer", "scheduled"}
    assert {p.name for p in EVENTS} == set(EXPECTED)


@pytest.mark.parametrize("event_file", EVENTS, ids=[f"{p.parent.name}/{p.name}" for p in EVENTS])
def test_function_on_event(
    event_file: Path, job_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letters = "arn:aws:sqs:us-east-1:123456789012:kilo-bridge-agent-jobs-dlq"  # the sample event's queue
    settings = job_settings(jobs_concurrency=0, repo_allow_local=False, agent_dead_letter_queue_arn=dead_letters)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    result = invoke(event_file.parent.name, json.loads(event_file.read_text()))
    assert EXPECTED[event_file.name](result), result
