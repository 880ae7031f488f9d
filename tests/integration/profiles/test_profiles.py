"""Saved profiles through the API: sealed in Redis, names only out, owned by their key, and a job started
with one gets its values (the run's own profileEnv winning). Real Redis, the app in process or on uvicorn,
real git against the fake GitHub for the job."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job

SECRET = "s3cr3t-profile-value-not-real-42"


def everything_in_redis(client: redis.Redis, prefix: str) -> str:
    """Every string, hash field, set member and stream entry under the test's prefix, as one text."""
    parts: list[str] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            parts.append(repr(client.get(key)))
        elif kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"set":
            parts.append(repr(client.smembers(key)))
        elif kind == b"zset":
            parts.append(repr(client.zrange(key, 0, -1)))
        elif kind == b"stream":
            parts.append(repr(client.xrange(key)))
        elif kind == b"list":
            parts.append(repr(client.lrange(key, 0, -1)))
    return "\n".join(parts)


@pytest.fixture
def two_keys(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings], key_factory: Callable[..., str]
) -> tuple[TestClient, dict[str, str], dict[str, str]]:
    client = make_app_client(make_settings(auth_required=True))
    return client, {"Authorization": f"Bearer {key_factory('a')}"}, {"Authorization": f"Bearer {key_factory('b')}"}


def test_a_profile_is_kept_sealed_and_shown_by_its_variable_names_only(
    two_keys: tuple[TestClient, dict[str, str], dict[str, str]],
    redis_client: redis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, mine, _ = two_keys
    created = client.post(
        "/api/kilo/profiles", json={"name": "ci", "env": {"GITHUB_TOKEN": SECRET, "MODE": "x"}}, headers=mine
    )
    assert created.status_code == 201, created.text
    assert created.json()["variables"] == ["GITHUB_TOKEN", "MODE"] and created.json()["name"] == "ci"
    listed = client.get("/api/kilo/profiles", headers=mine)
    shown = client.get("/api/kilo/profiles/ci", headers=mine)
    assert [p["name"] for p in listed.json()["profiles"]] == ["ci"]
    assert shown.json()["variables"] == ["GITHUB_TOKEN", "MODE"]
    again = client.post("/api/kilo/profiles", json={"name": "ci", "env": {"A": "b"}}, headers=mine)
    assert again.status_code == 409
    rotated = client.put("/api/kilo/profiles/ci", json={"env": {"GITHUB_TOKEN": SECRET + "-2"}}, headers=mine)
    assert rotated.status_code == 200 and rotated.json()["variables"] == ["GITHUB_TOKEN"]
    for response in (created, listed, shown, again, rotated):
        assert SECRET not in response.text
    stored = everything_in_redis(redis_client, prefix)
    assert "v1.local." in stored and SECRET not in stored  # sealed: no value in plaintext
    logged = [str(vars(record)) for record in caplog.records]
    assert any("profile create" in line for line in logged) and not any(SECRET in line for line in logged)
    assert client.delete("/api/kilo/profiles/ci", headers=mine).status_code == 204
    assert client.get("/api/kilo/profiles/ci", headers=mine).status_code == 404
    assert client.get("/api/kilo/profiles", headers=mine).json() == {"profiles": []}
    assert not list(redis_client.scan_iter(match=prefix + "profile*"))


def test_another_keys_profile_is_absent(two_keys: tuple[TestClient, dict[str, str], dict[str, str]]) -> None:
    client, mine, theirs = two_keys
    assert client.post("/api/kilo/profiles", json={"name": "ci", "env": {"A": "1"}}, headers=mine).status_code == 201
    assert client.get("/api/kilo/profiles/ci", headers=theirs).status_code == 404
    assert client.put("/api/kilo/profiles/ci", json={"env": {"A": "2"}}, headers=theirs).status_code == 404
    assert client.delete("/api/kilo/profiles/ci", headers=theirs).status_code == 404
    assert client.get("/api/kilo/profiles", headers=theirs).json() == {"profiles": []}
    # its own profile of the same name is another one
    assert client.post("/api/kilo/profiles", json={"name": "ci", "env": {"B": "1"}}, headers=theirs).status_code == 201
    assert client.get("/api/kilo/profiles/ci", headers=mine).json()["variables"] == ["A"]
    # a run naming another key's profile is refused, and nothing is queued
    body = run_body("https://github.com/acme/widgets", profile="nope")
    refused = client.post("/api/kilo/run-agent", json=body, headers=theirs)
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "profile"
    assert client.get("/api/kilo/jobs", headers=theirs).json() == {"jobs": []}


def test_profiles_refuse_bad_names_and_variables(app_client: TestClient) -> None:
    bad = [
        {"name": "Upper", "env": {"A": "1"}},
        {"name": "ci", "env": {}},
        {"name": "ci", "env": {"lower": "1"}},
        {"name": "ci", "env": {"KILO_API_KEY": "1"}},  # reserved, as in profileEnv
    ]
    for body in bad:
        assert app_client.post("/api/kilo/profiles", json=body).status_code == 422, body
    assert app_client.get("/api/kilo/profiles/..%2Fx").status_code == 404
    assert app_client.put("/api/kilo/profiles/missing", json={"env": {"A": "1"}}).status_code == 404


@pytest.mark.slow
def test_a_job_started_with_a_profile_gets_its_values_and_the_runs_own_win(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings()), timeout=10)
    # The profile's mode would fail the run: the request's own value must win for it to succeed.
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "fail"}
    assert client.post("/api/kilo/profiles", json={"name": "widgets", "env": env}).status_code == 201
    body = run_body(fake_github.repo_url("acme", "widgets"), profile="widgets", profileEnv={"FAKE_KILO_MODE": "write"})
    started = client.post("/api/kilo/run-agent", json=body)
    assert started.status_code == 202, started.text
    job = wait_job(client, started.json()["jobId"])
    assert job["status"] == "succeeded", job
    # the repository token came from the profile alone: git pushed and the PR call was authenticated with it
    assert job["result"]["prUrl"] == f"{fake_github.url}/acme/widgets/pull/1"
    assert any(r["auth"] for r in fake_github.git_requests)
    assert GITHUB_TOKEN not in everything_in_redis(redis_client, prefix)
