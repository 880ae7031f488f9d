"""A job tells its story: each phase is stamped by the store when it begins (claim.lua, heartbeat.lua), so its
duration is known; a job that did not succeed keeps the progress it reached; one plain outcome line; the API
shows the task (or the agent's default), dry run, times, durations and outcome. Real Redis, the app in process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.jobs.record import JobRecord, new_job_id
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.jobs.story import outcome
from kilo_bridge.platform.clock import now_ms
from kilo_bridge.platform.redis import Store
from tests.support import run_sync


def _record(**extra: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": new_job_id(),
        "status": "queued",
        "agent": "apply-patch-and-pr",
        "repo_url": "https://github.com/acme/widgets.git",
        "timeout_ms": 600_000,
        "created_ms": now_ms(),
    }
    values.update(extra)
    return JobRecord(**values)


async def _drive(
    settings: Settings, record: JobRecord, beats: list[str], status: str, fields: dict[str, Any]
) -> JobRecord:
    """Create, claim, beat through `beats` (each phase twice: the second beat is no news) and end the job."""
    store = Store(settings)
    jobs = JobStore(store)
    try:
        await jobs.create(record, "", None, 0)
        claim = await jobs.claim(record.id, None, "worker-1")
        assert claim.verdict == "ok"
        for i, phase in enumerate(beats):
            assert await jobs.heartbeat(record.id, claim.attempt, phase, 10 + 20 * i) == "ok"
            assert await jobs.heartbeat(record.id, claim.attempt, phase, 10 + 20 * i) == "ok"
        if status:
            assert await jobs.finish(record.id, None, claim.attempt, status, fields)
        got = await jobs.get(record.id)
        assert got is not None
        return got
    finally:
        await store.close()


def test_each_phase_is_stamped_once_when_it_begins(make_settings: Callable[..., Settings]) -> None:
    before = now_ms()
    job = run_sync(_drive(make_settings(), _record(), ["cloning", "agent", "pushing"], "", {}))
    assert [name for name, _ in job.phases] == ["cloning", "agent", "pushing"]  # a repeated beat adds nothing
    stamps = [ms for _, ms in job.phases]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= now_ms()
    assert stamps[0] == job.started_ms


@pytest.mark.parametrize(("status", "progress"), [("failed", 50), ("timed_out", 50), ("succeeded", 100)])
def test_only_a_job_that_succeeded_shows_a_full_progress_bar(
    make_settings: Callable[..., Settings], status: str, progress: int
) -> None:
    fields = {"progress": "100", "reason": "agent_failed"} if status != "succeeded" else {"progress": "100"}
    job = run_sync(_drive(make_settings(), _record(), ["cloning", "agent", "uploading"], status, fields))
    assert job.progress == progress


@pytest.mark.parametrize(
    ("record", "after", "line"),
    [
        (
            {"dry_run": True, "result": {"filesChanged": ["HELLO.md"]}},
            "pull_request",
            "dry run: diff kept, nothing pushed",
        ),
        ({"result": {"filesChanged": []}}, "pull_request", "no changes: nothing pushed"),
        (
            {"result": {"filesChanged": ["a"], "branch": "kilo/job_1"}},
            "pull_request",
            "branch kilo/job_1 pushed, no pull request: not a GitHub repository",
        ),
        (
            {"result": {"filesChanged": ["a"], "prUrl": "https://github.com/acme/widgets/pull/7"}},
            "pull_request",
            "pull request opened: https://github.com/acme/widgets/pull/7",
        ),
        ({"result": {}}, "report", "report only: nothing pushed (the summary is the result)"),
        ({"status": "failed", "reason": "agent_failed"}, "pull_request", "failed: agent_failed"),
        (
            {"status": "cancelled", "reason": "cancelled_by_user", "result": {"filesChanged": ["a"]}},
            "pull_request",
            "cancelled by its user, diff kept",
        ),
    ],
)
def test_one_plain_outcome_line(record: dict[str, Any], after: str, line: str) -> None:
    values = {"status": "succeeded", "finished_ms": now_ms(), **record}
    assert outcome(_record(**values), after) == line


def test_the_api_shows_the_task_times_durations_and_outcome(
    make_app_client: Callable[..., TestClient], job_settings: Callable[..., Settings]
) -> None:
    settings = job_settings(jobs_concurrency=0)
    client = make_app_client(settings)
    default_task = _record(dry_run=True)
    run_sync(
        _drive(
            settings,
            default_task,
            ["cloning", "agent", "uploading"],
            "succeeded",
            {"result": {"filesChanged": ["HELLO.md"], "summary": "Added HELLO.md."}, "progress": "100"},
        )
    )
    job = client.get(f"/api/kilo/job/{default_task.id}").json()
    assert job["prompt"] is None and job["dryRun"] is True  # the console and CLI say "the agent's default task"
    assert job["outcome"] == "dry run: diff kept, nothing pushed"
    assert [p["phase"] for p in job["phases"]] == ["queued", "cloning", "agent", "uploading"]
    assert all(p["durationMs"] is not None and p["durationMs"] >= 0 for p in job["phases"])
    assert job["durationMs"] == sum(p["durationMs"] for p in job["phases"])
    assert job["startedAt"] and job["finishedAt"] and job["progress"] == 100

    running = _record(prompt="Fix the typo")
    run_sync(_drive(settings, running, ["cloning", "agent"], "", {}))
    shown = client.get(f"/api/kilo/job/{running.id}").json()
    assert shown["prompt"] == "Fix the typo" and shown["outcome"] is None and shown["durationMs"] is None
    assert shown["phases"][-1] == {**shown["phases"][-1], "phase": "agent", "durationMs": None}
    listed = {j["id"]: j for j in client.get("/api/kilo/jobs").json()["jobs"]}
    assert listed[default_task.id]["outcome"] == "dry run: diff kept, nothing pushed"
