"""run-agent's contract: bad input is a clear 4xx and nothing starts; ids, idempotency, ownership, limits.
All of it is requests and answers, so the app runs in process (Starlette's TestClient), with no job worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import run_body
from tests.support import TEST_KEY


@pytest.fixture
def api(make_app_client: Callable[..., TestClient], job_settings: Callable[..., Settings]) -> TestClient:
    # No worker: what is accepted stays queued, so "nothing starts" is observable.
    return make_app_client(job_settings(jobs_concurrency=0))


@pytest.fixture
def strict_api(make_app_client: Callable[..., TestClient], job_settings: Callable[..., Settings]) -> TestClient:
    """Production-like: https on allowed hosts only, no local repositories."""
    return make_app_client(job_settings(jobs_concurrency=0, repo_allow_local=False))


def nothing_started(client: TestClient, redis_client: redis.Redis, prefix: str) -> bool:
    return client.get("/api/kilo/jobs").json()["jobs"] == [] and not list(
        redis_client.scan_iter(match=prefix + "agent-jobs:*")
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://github.com/acme/widgets.git", "https://"),
        ("https://user:pw@github.com/acme/widgets.git", "credentials"),
        ("https://ghp_x@github.com/acme/widgets.git", "credentials"),
        ("https://140.82.112.3/acme/widgets.git", "IP addresses"),
        ("https://10.0.0.8/acme/widgets.git", "IP addresses"),
        ("https://169.254.169.254/latest/meta-data", "IP addresses"),
        ("https://[::1]/acme/widgets.git", "IP addresses"),
        ("https://2130706433/acme/widgets.git", "IP addresses"),
        ("https://evil.example.com/acme/widgets.git", "allowlist"),
        ("https://github.com.evil.example/acme/widgets.git", "allowlist"),
        ("https://github.com:8443/acme/widgets.git", "default https port"),
        ("ext::sh -c touch% /tmp/pwned", "transport"),
        ("file:///etc/passwd", "https://"),
        ("-uhttps://github.com/acme/widgets.git", "option"),
        ("--upload-pack=touch /tmp/pwned", "option"),
        ("https://github.com/acme/widgets.git --config=core.sshCommand=x", "spaces"),
        ("https://github.com/acme/widgets.git\nX: y", "control"),
        ("https://github.com/acme/../../etc", "repository path"),
        ("https://github.com/acme/-widgets", "repository path"),
        ("https://github.com/acme/widgets.git?x=1", "query"),
        ("/tmp/some/repo.git", "local paths"),
        ("https://github.com/", "repository path"),
    ],
)
def test_bad_repo_urls_are_refused(
    strict_api: TestClient, url: str, says: str, redis_client: redis.Redis, prefix: str
) -> None:
    response = strict_api.post("/api/kilo/run-agent", json=run_body(url))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert says in error["message"], error
    assert nothing_started(strict_api, redis_client, prefix)


def test_allowed_host_is_accepted(strict_api: TestClient) -> None:
    response = strict_api.post("/api/kilo/run-agent", json=run_body("https://github.com/acme/widgets.git"))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"timeoutMs": 999}, "timeoutMs"),
        ({"timeoutMs": 3_600_001}, "timeoutMs"),
        ({"profileEnv": {"lower_case": "x"}}, "profileEnv"),
        ({"profileEnv": {"PATH": "/evil"}}, "profileEnv.PATH"),
        ({"profileEnv": {"LD_PRELOAD": "/evil.so"}}, "profileEnv.LD_PRELOAD"),
        ({"profileEnv": {"GIT_SSH_COMMAND": "touch /tmp/x"}}, "profileEnv.GIT_SSH_COMMAND"),
        ({"profileEnv": {"NODE_OPTIONS": "--require /evil"}}, "profileEnv.NODE_OPTIONS"),
        ({"profileEnv": {"KILO_CONFIG_CONTENT": "{}"}}, "profileEnv.KILO_CONFIG_CONTENT"),
        ({"profileEnv": {"BIG": "x" * 9000}}, "profileEnv.BIG"),
        ({"profileEnv": {f"V{i}": "x" for i in range(40)}}, "profileEnv"),
        ({"profileEnv": {"A": 1}}, "profileEnv.A"),
        ({"baseBranch": "--upload-pack=x"}, "baseBranch"),
        ({"baseBranch": "main..evil"}, "baseBranch"),
        ({"agent": "Review; rm -rf /"}, "agent"),
        ({"maxCostUsd": 0}, "maxCostUsd"),
        ({"prompt": ""}, "prompt"),  # (no prompt at all is fine: the agent's default task runs)
        ({"patch": ""}, "patch"),
        ({"dryRun": "yes please"}, "dryRun"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_fields_are_refused_and_nothing_starts(
    api: TestClient, fake_github: FakeGitHub, patch: dict[str, Any], field: str, redis_client: redis.Redis, prefix: str
) -> None:
    body = run_body(fake_github.repo_url("acme", "widgets"))
    body.update(patch)
    response = api.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    fields = [d.get("field", "") for d in error.get("details") or []]
    assert any(f.startswith(field) or field in f for f in fields) or field in error["message"], error
    assert "/evil" not in response.text and "xxxxxxxx" not in response.text  # inputs are not echoed
    assert nothing_started(api, redis_client, prefix)


def test_unknown_agent_lists_the_known_ones(api: TestClient, fake_github: FakeGitHub) -> None:
    response = api.post(
        "/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"), agent="deploy-to-prod")
    )
    assert response.status_code == 422
    assert "apply-patch-and-pr" in response.json()["error"]["message"] and "review" in response.text


def test_agents_catalogue(api: TestClient) -> None:
    agents = {a["name"]: a for a in api.get("/api/kilo/agents").json()["agents"]}
    assert agents["apply-patch-and-pr"]["after"] == "pull_request"
    assert agents["review"]["after"] == "report" and agents["review"]["requiresPrompt"] is False


@pytest.mark.parametrize(
    "job_id", ["nope", "job_" + "0" * 24, "job_" + "Z" * 24, "../../etc/passwd", "job_%00", "*", "job_" + "a" * 2000]
)
def test_unknown_or_malformed_job_ids_are_404(api: TestClient, job_id: str) -> None:
    for method, path in (
        ("GET", f"/api/kilo/job/{job_id}"),
        ("DELETE", f"/api/kilo/job/{job_id}"),
        ("GET", f"/api/kilo/job/{job_id}/logs"),
        ("GET", f"/api/kilo/job/{job_id}/artifacts/x"),
    ):
        response = api.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] in ("not_found",)


def test_queued_job_view_and_list_filters(api: TestClient, fake_github: FakeGitHub) -> None:
    accepted = api.post(
        "/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": "ghp_secret_xyz_123"}),
    )
    assert accepted.status_code == 202
    assert accepted.headers["location"] == accepted.json()["statusUrl"]
    job = api.get(f"/api/kilo/job/{accepted.json()['jobId']}").json()
    assert (job["status"], job["timeoutMs"], job["attempt"]) == ("queued", 600_000, 0)
    assert "profileEnv" not in job and "ghp_secret_xyz_123" not in str(job)
    assert [j["id"] for j in api.get("/api/kilo/jobs?status=queued").json()["jobs"]] == [job["id"]]
    assert api.get("/api/kilo/jobs?status=succeeded").json()["jobs"] == []
    assert api.get("/api/kilo/jobs?status=bogus").status_code == 422
    assert api.get("/api/kilo/jobs?limit=0").status_code == 422
    assert api.get("/api/kilo/stats").json()["agentRuns"]["queued"] == 1


def test_idempotency_key_returns_the_same_job(api: TestClient, fake_github: FakeGitHub) -> None:
    body = run_body(fake_github.repo_url("acme", "widgets"))
    first = api.post("/api/kilo/run-agent", json=body, headers={"Idempotency-Key": "deploy-42"})
    again = api.post("/api/kilo/run-agent", json=body, headers={"Idempotency-Key": "deploy-42"})
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"]
    other = api.post("/api/kilo/run-agent", json={**body, "dryRun": True}, headers={"Idempotency-Key": "deploy-42"})
    assert other.status_code == 409 and other.json()["error"]["jobId"] == first.json()["jobId"]
    assert len(api.get("/api/kilo/jobs").json()["jobs"]) == 1


def test_jobs_belong_to_their_key_and_max_jobs_is_enforced(
    make_app_client: Callable[..., TestClient],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    fake_github: FakeGitHub,
) -> None:
    key_a, key_b = key_factory("team-a", max_jobs=1), key_factory("team-b")
    app = make_app_client(job_settings(jobs_concurrency=0, auth_required=True))
    a, b = {"Authorization": f"Bearer {key_a}"}, {"x-api-key": key_b}
    body = run_body(fake_github.repo_url("acme", "widgets"))
    assert app.post("/api/kilo/run-agent", json=body, headers={"x-api-key": TEST_KEY}).status_code == 401
    job_id = app.post("/api/kilo/run-agent", json=body, headers=a).json()["jobId"]
    limited = app.post("/api/kilo/run-agent", json=body, headers=a)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "too_many_jobs"
    assert app.get(f"/api/kilo/job/{job_id}", headers=b).status_code == 404  # another key's job does not exist for b
    assert app.delete(f"/api/kilo/job/{job_id}", headers=b).status_code == 404
    assert app.get("/api/kilo/jobs", headers=b).json()["jobs"] == []
    assert (
        app.get(f"/api/kilo/job/{job_id}", headers=a).json()["keyId"]
        == app.get("/api/kilo/jobs", headers=a).json()["jobs"][0]["keyId"]
    )
    assert app.delete(f"/api/kilo/job/{job_id}", headers=a).json()["status"] == "cancelled"
    assert app.post("/api/kilo/run-agent", json=body, headers=a).status_code == 202  # the slot is free again


def test_without_a_kilo_key_run_agent_is_refused_at_submit(
    make_app_client: Callable[..., TestClient],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    """An agent with no key behind the bridge could make no model call: 503 now, not `agent_failed` later."""
    client = make_app_client(job_settings(jobs_concurrency=0, kilo_api_key=None))
    answer = client.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets")))
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "not_configured" and "KILO_API_KEY" in error["message"]
    assert nothing_started(client, redis_client, prefix)
