"""A deploy's approval as one atomic Redis step (jobs/lua/decide.lua): taken once, only from a running job that
awaits it and before its window ends; a finished job never runs again. And what a deploy run may name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.jobs.record import JobRecord
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.keys.store import digest
from kilo_bridge.platform.clock import now_ms
from kilo_bridge.platform.redis import Store
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN

DEPLOY = {"command": "./ship.sh", "allow": ["deploy.example.test"]}


@pytest.fixture
async def jobs(store_settings: Settings) -> AsyncIterator[JobStore]:
    store = Store(store_settings)
    yield JobStore(store)
    await store.close()


async def awaiting(jobs: JobStore, job_factory: Callable[..., JobRecord], window_ms: int = 60_000) -> tuple[str, int]:
    job_id = job_factory(agent="deploy", deploy=DEPLOY, require_approval=True).id
    claim = await jobs.claim(job_id, None, "w1")
    assert claim.verdict == "ok"
    assert await jobs.await_approval(job_id, claim.attempt, {"command": "./ship.sh"}, now_ms() + window_ms) == "ok"
    return job_id, claim.attempt


async def test_an_approval_is_taken_once_and_shows_the_job_awaiting_it(
    jobs: JobStore, job_factory: Callable[..., JobRecord]
) -> None:
    job_id, _ = await awaiting(jobs, job_factory)
    record = await jobs.get(job_id)
    assert (
        record is not None
        and record.shown_status == "awaiting_approval"
        and record.approval == {"command": "./ship.sh"}
    )
    assert await jobs.decide(job_id, "approved") == "ok"
    assert await jobs.decide(job_id, "rejected") == "decided:approved"
    assert await jobs.decide(job_id, "expired") == "decided:approved"
    assert await jobs.decision(job_id) == "approved"


async def test_a_decision_after_the_window_is_refused_and_recorded_expired(
    jobs: JobStore, job_factory: Callable[..., JobRecord]
) -> None:
    job_id, _ = await awaiting(jobs, job_factory, window_ms=-1)
    assert await jobs.decide(job_id, "approved") == "expired"
    assert await jobs.decision(job_id) == "expired"
    assert await jobs.decide(job_id, "approved") == "decided:expired"


async def test_no_decision_for_a_job_that_does_not_await_one(
    jobs: JobStore, job_factory: Callable[..., JobRecord]
) -> None:
    queued = job_factory(agent="deploy", deploy=DEPLOY, require_approval=True).id
    assert await jobs.decide(queued, "approved") == "not_awaiting"
    job_id, attempt = await awaiting(jobs, job_factory)
    assert await jobs.finish(job_id, None, attempt, "cancelled", {"reason": "cancelled_by_user"})
    assert await jobs.decide(job_id, "approved") == "not_awaiting"  # a finished job never runs again
    assert await jobs.await_approval(job_id, attempt, {}, now_ms() + 1000) == "lost"
    record = await jobs.get(job_id)
    assert record is not None and record.status == "cancelled"
    assert await jobs.decide("job_" + "0" * 24, "approved") == "missing"


def test_a_deploy_run_names_its_step_or_takes_its_profiles_and_no_other_agent_takes_one(
    make_app_client: Callable[..., TestClient], job_settings: Callable[..., Settings], fake_github: FakeGitHub
) -> None:
    app = make_app_client(job_settings(jobs_concurrency=0))
    repo = fake_github.repo_url("acme", "widgets")
    base = {"repoUrl": repo, "agent": "deploy", "profileEnv": {"GITHUB_TOKEN": GITHUB_TOKEN}}

    def run(**body: object) -> tuple[int, str]:
        answer = app.post("/api/kilo/run-agent", json={**base, **body})
        return answer.status_code, answer.text

    assert run()[0] == 422  # no command anywhere
    for bad in (["*"], ["*.com"], ["exa mple.test"], ["host:99999"], ["host:port"], ["a..b"]):
        code, text = run(deploy={"command": "./ship.sh", "allow": bad})
        assert code == 422, (bad, text)
    assert (
        run(deploy={"command": "./ship.sh", "allow": ["*.example.test", "api.example.test:8443", "10.0.0.5:22"]})[0]
        == 202
    )
    # The profile's step: its command and hosts are the step, not values the command gets.
    code, text = run(profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "DEPLOY_COMMAND": "./ship.sh", "DEPLOY_ALLOW": "x.test"})
    assert code == 202, text
    profile = {"DEPLOY_COMMAND": "make deploy", "DEPLOY_ALLOW": "x.test, *.y.test"}
    job_id = app.post("/api/kilo/run-agent", json={**base, "profileEnv": profile}).json()["jobId"]
    job = app.get(f"/api/kilo/job/{job_id}").json()
    assert (
        job["deploy"] == {"command": "make deploy", "allow": ["x.test", "*.y.test"]} and job["requireApproval"] is False
    )
    assert run(profileEnv={"DEPLOY_COMMAND": "./ship.sh", "DEPLOY_ALLOW": "*"})[0] == 422
    other = {"repoUrl": repo, "agent": "build"}
    assert app.post("/api/kilo/run-agent", json={**other, "deploy": {"command": "x"}}).status_code == 422
    assert app.post("/api/kilo/run-agent", json={**other, "requireApproval": True}).status_code == 422


async def test_only_its_own_key_or_the_admin_decides_and_the_decision_is_audited(
    jobs: JobStore,
    job_factory: Callable[..., JobRecord],
    key_factory: Callable[..., str],
    make_app_client: Callable[..., object],
    job_settings: Callable[..., Settings],
) -> None:
    from starlette.testclient import TestClient

    owner, other = key_factory("team-a"), key_factory("team-b")
    settings = job_settings(jobs_concurrency=0, auth_required=True, admin_api_key="kb-admin-test-key")
    app = make_app_client(settings)
    assert isinstance(app, TestClient)
    ids = []
    for _ in range(2):
        record = job_factory(agent="deploy", deploy=DEPLOY, require_approval=True, owner=digest(owner))
        claim = await jobs.claim(record.id, record.owner, "w1")
        assert await jobs.await_approval(record.id, claim.attempt, {"command": "./ship.sh"}, now_ms() + 60_000) == "ok"
        ids.append(record.id)
    mine, theirs = ids
    assert app.post(f"/api/kilo/job/{mine}/approve", headers={"x-api-key": other}).status_code == 404
    assert app.post(f"/api/kilo/job/{mine}/reject", headers={"x-api-key": other}).status_code == 404
    assert app.get(f"/api/kilo/job/{mine}", headers={"x-api-key": owner}).json()["status"] == "awaiting_approval"
    assert await jobs.decision(mine) is None
    answer = app.post(f"/api/kilo/job/{mine}/approve", headers={"x-api-key": owner})
    assert answer.status_code == 200 and answer.json()["approval"]["decision"] == "approved", answer.text
    admin = {"Authorization": "Bearer kb-admin-test-key"}
    assert app.post(f"/api/kilo/admin/jobs/{theirs}/reject", headers={"x-api-key": owner}).status_code == 401
    assert app.post(f"/api/kilo/admin/jobs/{theirs}/reject", headers=admin).status_code == 200
    assert await jobs.decision(theirs) == "rejected"
    assert app.post(f"/api/kilo/admin/jobs/{theirs}/approve", headers=admin).status_code == 409
    audit = app.get("/api/kilo/admin/audit?action=job.", headers=admin).json()
    said = [(r["action"], r["target"], r["outcome"]) for r in audit["records"]]
    assert said == [("job.reject", theirs, "ok"), ("job.reject", theirs, "refused"), ("job.approve", mine, "ok")], said
