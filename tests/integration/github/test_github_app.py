"""The GitHub App end to end against the fake GitHub (it checks the App's RS256 JWT against the App's public
key, mints installation tokens only for what is asked and honours them only within it, records comments):
real signed deliveries to the webhook route, real jobs with real git, the runner minting its own token."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import wait_job
from tests.support import Response

APP_ID = "4242"
WEBHOOK_SECRET = "whsec-test-not-real-0123456789"
INSTALLATION = 77


@pytest.fixture
def app_settings(fake_github: FakeGitHub, tmp_path: Path) -> dict[str, Any]:
    """The App installed on acme/widgets in the fake; its private key in a file, as a deployment mounts it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(pem)
    fake_github.install_app(APP_ID, public.decode(), {("acme", "widgets"): INSTALLATION})
    fake_github.permissions = {"maintainer": "write", "drive-by": "read"}
    return {
        "github_app_id": APP_ID,
        "github_app_private_key_file": str(key_file),
        "github_webhook_secret": WEBHOOK_SECRET,
        "github_review_repos": "acme/widgets",
    }


def repository(fake_github: FakeGitHub) -> dict[str, Any]:
    return {
        "name": "widgets",
        "full_name": "acme/widgets",
        "owner": {"login": "acme"},
        "clone_url": fake_github.repo_url("acme", "widgets"),
    }


def comment_event(fake_github: FakeGitHub, body: str, user: str = "maintainer", number: int = 5) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": {"number": number, "title": "Typo in README", "body": "It says 'demo'."},
        "comment": {"body": body, "user": {"login": user, "type": "User"}},
        "repository": repository(fake_github),
    }


def pr_event(fake_github: FakeGitHub, action: str = "opened", number: int = 9) -> dict[str, Any]:
    return {
        "action": action,
        "pull_request": {"number": number, "head": {"ref": "main", "repo": {"full_name": "acme/widgets"}}},
        "repository": repository(fake_github),
    }


def deliver(
    client: httpx.Client | TestClient,
    event: str,
    payload: dict[str, Any],
    delivery: str | None = None,
    secret: str = WEBHOOK_SECRET,
) -> Response:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }
    return client.post("/api/kilo/github/webhook", content=body, headers=headers)


@pytest.fixture
def hooks(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
) -> TestClient:
    """The app in process, nothing running jobs: for what a delivery does before any job runs."""
    return make_app_client(make_settings(repo_allow_local=True, github_api_url=fake_github.api_url, **app_settings))


def test_a_bad_or_missing_signature_is_refused_and_nothing_starts(hooks: TestClient, fake_github: FakeGitHub) -> None:
    payload = comment_event(fake_github, "/kilo fix the typo")
    assert deliver(hooks, "issue_comment", payload, secret="not-the-secret").status_code == 401
    unsigned = hooks.post("/api/kilo/github/webhook", json=payload, headers={"X-GitHub-Event": "issue_comment"})
    assert unsigned.status_code == 401
    assert hooks.get("/api/kilo/jobs").json() == {"jobs": []}
    assert fake_github.token_requests == [] and fake_github.comments == []


def test_a_replayed_delivery_is_handled_once(hooks: TestClient, fake_github: FakeGitHub) -> None:
    payload = comment_event(fake_github, "/kilo fix the typo")
    first = deliver(hooks, "issue_comment", payload, delivery="d-1")
    again = deliver(hooks, "issue_comment", payload, delivery="d-1")
    assert first.status_code == 202 and first.json()["outcome"] == "started", first.text
    assert again.status_code == 202 and again.json() == {"outcome": "duplicate"}
    assert len(hooks.get("/api/kilo/jobs").json()["jobs"]) == 1
    (link,) = [c for c in fake_github.comments if "started job" in c["body"]]
    job_id = first.json()["jobId"]
    assert link["number"] == 5 and f"/api/kilo/job/{job_id}" in link["body"]
    # the webhook's token: this one repository, for comments only, revoked after use
    (request,) = fake_github.token_requests
    assert request["repositories"] == ["widgets"] and request["installation"] == INSTALLATION
    assert request["permissions"] == {"issues": "write", "pull_requests": "write"}
    assert fake_github.tokens == {} and len(fake_github.revoked) == 1


def test_other_events_and_comments_are_ignored_with_a_2xx(hooks: TestClient, fake_github: FakeGitHub) -> None:
    ignored = [
        ("ping", {"zen": "Keep it logically awesome.", "repository": repository(fake_github)}),
        ("issue_comment", comment_event(fake_github, "thanks, looks good")),
        ("issue_comment", comment_event(fake_github, "/kilobytes are small")),
        ("issue_comment", comment_event(fake_github, "/kilo fix it", user="drive-by")),  # no write access
        ("pull_request", pr_event(fake_github, action="closed")),
        ("star", {"action": "created"}),
    ]
    for event, payload in ignored:
        response = deliver(hooks, event, payload)
        assert response.status_code == 202 and response.json()["outcome"] == "ignored", (event, response.text)
    assert hooks.get("/api/kilo/jobs").json() == {"jobs": []}
    assert fake_github.comments == []


def test_a_forged_app_jwt_gets_no_installation_token(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = tmp_path / "other.pem"
    forged.write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    settings = {**app_settings, "github_app_private_key_file": str(forged)}
    client = make_app_client(make_settings(repo_allow_local=True, github_api_url=fake_github.api_url, **settings))
    response = deliver(client, "issue_comment", comment_event(fake_github, "/kilo fix the typo"), delivery="d-2")
    assert response.status_code == 502  # GitHub refused the App: nothing started, and a redelivery may retry
    assert fake_github.token_requests == [] and client.get("/api/kilo/jobs").json() == {"jobs": []}
    assert deliver(client, "issue_comment", comment_event(fake_github, "/kilo x"), delivery="d-2").status_code == 502


@pytest.mark.slow
def test_a_kilo_comment_becomes_a_pull_request_on_a_token_minted_for_the_job(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings(**app_settings)), timeout=10)
    started = deliver(client, "issue_comment", comment_event(fake_github, "/kilo fix the typo in README"))
    assert started.status_code == 202 and started.json()["outcome"] == "started", started.text
    job = wait_job(client, started.json()["jobId"])
    assert job["status"] == "succeeded", job
    assert job["result"]["prUrl"] == f"{fake_github.url}/acme/widgets/pull/1"
    # the runner's token: this repository only, contents + pull requests, and gone when the job ended
    job_token = fake_github.token_requests[1]
    assert job_token["repositories"] == ["widgets"]
    assert job_token["permissions"] == {"contents": "write", "pull_requests": "write"}
    assert fake_github.tokens == {} and len(fake_github.revoked) == len(fake_github.token_requests)
    # on the issue: the job's link, then its pull request
    bodies = [c["body"] for c in fake_github.comments if c["number"] == 5]
    assert len(bodies) == 2 and "started job" in bodies[0]
    status, link = bodies[1].split("\n")[0], f"/api/kilo/job/{job['id']})"
    assert status.startswith(f"Kilo Bridge job [`{job['id']}`](") and link in status
    assert status.endswith(f" succeeded: pull request {fake_github.url}/acme/widgets/pull/1")
    # the token never reached the job's record, log or artifacts
    log = client.get(f"/api/kilo/job/{job['id']}/artifacts/log.jsonl").text
    assert "ghs_fake" not in log + json.dumps(job)


@pytest.mark.slow
def test_a_review_without_a_findings_block_posts_its_summary_and_says_so(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings(**app_settings)), timeout=10)
    fake_github.open_pull("widgets", 9, "main")
    started = deliver(client, "pull_request", pr_event(fake_github))
    assert started.status_code == 202 and started.json()["outcome"] == "started", started.text
    job = wait_job(client, started.json()["jobId"])
    assert job["status"] == "succeeded", job
    (review,) = fake_github.reviews  # a pull request review, no issue comment
    assert review["comments"] == [] and "No inline findings" in review["body"] and "```json" in review["body"]
    assert fake_github.comments == []
    (check,) = fake_github.check_runs
    assert check["name"] == "Kilo Bridge review" and check["conclusion"] == "success"
    assert "findings unreadable" in check["output"]["title"]
    # a review job reads; its reviewer token may post the review and run the check, nothing more
    job_tokens = [r for r in fake_github.token_requests if "contents" in r["permissions"]]
    assert {json.dumps(r["permissions"], sort_keys=True) for r in job_tokens} == {
        json.dumps({"contents": "read", "pull_requests": "read"}, sort_keys=True),
        json.dumps({"contents": "read", "pull_requests": "write", "checks": "write"}, sort_keys=True),
    }
    assert fake_github.tokens == {}


def test_drafts_and_bots_pull_requests_are_skipped_unless_configured(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
) -> None:
    draft = pr_event(fake_github)
    draft["pull_request"]["draft"] = True
    bot = pr_event(fake_github, number=10)
    bot["pull_request"]["user"] = {"login": "dependabot[bot]", "type": "Bot"}
    client = _app_client(make_app_client, make_settings, app_settings, fake_github)
    assert deliver(client, "pull_request", draft).json() == {"outcome": "ignored", "detail": "a draft pull request"}
    assert deliver(client, "pull_request", bot).json()["detail"] == "a pull request opened by a bot"
    assert client.get("/api/kilo/jobs").json() == {"jobs": []}
    # opted in by the repository's options: reviewed, with its model and cost cap
    options = {**app_settings, "github_review_repos": "acme/widgets:drafts:bots:model=kilo/review:max-cost=0.25"}
    client = _app_client(make_app_client, make_settings, options, fake_github)
    for payload in (draft, bot):
        payload["action"] = "reopened"
        assert deliver(client, "pull_request", payload).json()["outcome"] == "started"
    jobs = client.get("/api/kilo/jobs").json()["jobs"]
    assert len(jobs) == 2 and all(j["maxCostUsd"] == 0.25 and j["model"] == "kilo/review" for j in jobs), jobs


def test_kilo_review_on_a_pull_request_starts_a_full_review(
    hooks: TestClient, fake_github: FakeGitHub, redis_client: Any, prefix: str
) -> None:
    fake_github.open_pull("widgets", 5, "main")
    redis_client.set(prefix + "github:reviewed:acme/widgets:5", "a" * 40)
    payload = comment_event(fake_github, "/kilo review")
    payload["issue"]["pull_request"] = {"url": "…"}
    started = deliver(hooks, "issue_comment", payload)
    assert started.json()["outcome"] == "started", started.text
    (job,) = hooks.get("/api/kilo/jobs").json()["jobs"]
    assert job["agent"] == "review" and job["id"] == started.json()["jobId"]
    assert redis_client.get(prefix + "github:reviewed:acme/widgets:5") is None  # the next review is a full one


# -- who owns the jobs the App starts (GITHUB_APP_KEY_ID) ----------------------------------------------------


def _app_client(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    **overrides: Any,
) -> TestClient:
    settings = make_settings(repo_allow_local=True, github_api_url=fake_github.api_url, **app_settings, **overrides)
    return make_app_client(settings)


def test_with_auth_required_and_no_owning_key_the_app_starts_nothing_and_says_so(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
) -> None:
    client = _app_client(make_app_client, make_settings, app_settings, fake_github, auth_required=True)
    comment = deliver(client, "issue_comment", comment_event(fake_github, "/kilo fix the typo"))
    review = deliver(client, "pull_request", pr_event(fake_github))
    assert comment.status_code == 202 and comment.json() == {"outcome": "refused", "detail": "not_configured"}
    assert review.status_code == 202 and review.json() == {"outcome": "refused", "detail": "not_configured"}
    assert redis_client.zcard(prefix + "jobs") == 0  # no job at all, owned or not
    (said,) = fake_github.comments  # on the issue, once; the pull request is left alone
    assert said["number"] == 5 and "not configured" in said["body"] and "GITHUB_APP_KEY_ID" in said["body"]
    # a drive-by commenter still gets no answer at all
    deliver(client, "issue_comment", comment_event(fake_github, "/kilo x", user="drive-by"))
    assert len(fake_github.comments) == 1


def test_a_revoked_owning_key_starts_nothing(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    key_factory: Callable[..., str],
    redis_client: Any,
    prefix: str,
) -> None:
    from kilo_bridge.keys.store import digest, key_id

    owner = key_id(digest(key_factory("github-app")))
    admin = "admin-key-not-real-0123456789"
    client = _app_client(
        make_app_client,
        make_settings,
        app_settings,
        fake_github,
        auth_required=True,
        github_app_key_id=owner,
        admin_api_key=admin,
    )
    assert client.delete(f"/api/kilo/admin/keys/{owner}", headers={"X-API-Key": admin}).status_code == 200
    response = deliver(client, "issue_comment", comment_event(fake_github, "/kilo fix the typo"))
    assert response.json() == {"outcome": "refused", "detail": "not_configured"}
    assert redis_client.zcard(prefix + "jobs") == 0
    assert "not configured" in fake_github.comments[0]["body"]


def test_the_owning_key_owns_the_apps_jobs_and_its_budget_applies(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    app_settings: dict[str, Any],
    fake_github: FakeGitHub,
    key_factory: Callable[..., str],
) -> None:
    from kilo_bridge.keys.store import digest, key_id

    secret = key_factory("github-app", budget_usd=1.5)
    client = _app_client(
        make_app_client,
        make_settings,
        app_settings,
        fake_github,
        auth_required=True,
        github_app_key_id=key_id(digest(secret)),
        job_default_max_cost_usd=1.0,
    )
    started = deliver(client, "issue_comment", comment_event(fake_github, "/kilo fix the typo"))
    assert started.json()["outcome"] == "started", started.text
    mine = {"X-API-Key": secret}
    (job,) = client.get("/api/kilo/jobs", headers=mine).json()["jobs"]
    assert job["id"] == started.json()["jobId"] and job["maxCostUsd"] == 1.0  # the key's default cap, reserved
    # The key's budget (1.5) cannot hold a second 1.0 reservation: refused, and said on the issue.
    again = deliver(client, "issue_comment", comment_event(fake_github, "/kilo and another", number=6))
    assert again.json() == {"outcome": "refused", "detail": "budget_exceeded"}, again.text
    (refusal,) = [c for c in fake_github.comments if c["number"] == 6]
    assert "could not start the job" in refusal["body"] and "budget" in refusal["body"]
    assert len(client.get("/api/kilo/jobs", headers=mine).json()["jobs"]) == 1
