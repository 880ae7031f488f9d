"""`/kilo` on pull requests, before and around the agent: signed deliveries to the real app, the fake GitHub
(built from GitHub's REST and webhook docs) with real git remotes. A review comment on a fork's pull request
starts nothing and says why in its thread; a drive-by's or a bot's starts nothing and gets no answer; the same
review comment delivered twice is one job; a pull request the App did not open gets a job of its own; a thread
whose latest job is ending, or kept no conversation, is told so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.jobs.artifacts import SESSION_ARTIFACT
from tests.e2e.test_kilo_cli_review import APP_PY, push
from tests.fakes.fake_github import FakeGitHub
from tests.integration.github.test_github_app import app_settings, deliver, hooks, repository  # noqa: F401
from tests.jobkit import wait_job


def pr_comment(fake_github: FakeGitHub, number: int, body: str, comment_id: int) -> dict[str, Any]:
    """An `issue_comment` delivery on a pull request (GitHub sends the pull request as an issue with a
    `pull_request` member; webhooks/webhook-events-and-payloads#issue_comment)."""
    return {
        "action": "created",
        "issue": {
            "number": number,
            "title": "apply-patch-and-pr: add ONE.md",
            "body": "Opened by Kilo Bridge.",
            "pull_request": {"url": f"{fake_github.api_url}/repos/acme/widgets/pulls/{number}"},
            "user": {"login": "kilo-bridge[bot]", "type": "Bot"},
        },
        "comment": {"id": comment_id, "body": body, "user": {"login": "maintainer", "type": "User"}},
        "repository": {**repository(fake_github), "id": 4401},
    }


def review_comment_delivery(fake_github: FakeGitHub, comment: dict[str, Any], number: int = 9) -> dict[str, Any]:
    """A `pull_request_review_comment` delivery (webhooks/webhook-events-and-payloads#pull_request_review_comment):
    the comment, the pull request with its head and base, the repository."""
    pull = fake_github.pull_requests[("widgets", number)]
    head_repo = pull.get("fork") or "acme/widgets"
    return {
        "action": "created",
        "comment": {k: v for k, v in comment.items() if k not in ("repo", "number")},
        "pull_request": {
            "number": number,
            "user": {"login": pull["user"], "type": "User"},
            "html_url": f"{fake_github.url}/acme/widgets/pull/{number}",
            "head": {"ref": pull["head"], "sha": "0" * 40, "repo": {"full_name": head_repo}},
            "base": {"ref": pull["base"], "repo": {"full_name": "acme/widgets"}},
        },
        "repository": {**repository(fake_github), "id": 4401},
    }


def _feature(fake_github: FakeGitHub, fork: str | None = None) -> dict[str, Any]:
    """A pull request #9 adding app.py on `feature`, and a `/kilo` review comment on its line 5."""
    push(fake_github, "feature", {"app.py": APP_PY}, "app")
    fake_github.open_pull("widgets", 9, "feature", fork=fork)
    return fake_github.review_comment("widgets", 9, "app.py", 5, "/kilo f2 must return 20")


def _receive_packs(fake_github: FakeGitHub) -> list[dict[str, Any]]:
    return [r for r in fake_github.git_requests if "git-receive-pack" in r["path"]]


def test_a_review_comment_on_a_fork_pull_request_starts_nothing_and_says_why_in_its_thread(
    hooks: TestClient,  # noqa: F811
    fake_github: FakeGitHub,
) -> None:
    comment = _feature(fake_github, fork="someone/widgets")
    answered = deliver(hooks, "pull_request_review_comment", review_comment_delivery(fake_github, comment))
    assert answered.status_code == 202 and answered.json() == {"outcome": "refused", "detail": "fork"}
    assert hooks.get("/api/kilo/jobs").json() == {"jobs": []} and _receive_packs(fake_github) == []
    (reply,) = [c for c in fake_github.review_comments if c["in_reply_to_id"] == comment["id"]]
    assert "fork" in reply["body"] and "Nothing was started" in reply["body"]
    assert fake_github.comments == []  # in the review thread, not on the pull request's conversation


def test_a_review_comment_by_a_reader_or_a_bot_is_ignored_without_an_answer(
    hooks: TestClient,  # noqa: F811
    fake_github: FakeGitHub,
) -> None:
    comment = _feature(fake_github)
    drive_by = review_comment_delivery(fake_github, comment)
    drive_by["comment"]["user"] = {"login": "drive-by", "type": "User"}
    bot = review_comment_delivery(fake_github, {**comment, "id": comment["id"] + 100})
    bot["comment"]["user"] = {"login": "helper[bot]", "type": "Bot"}
    edited = review_comment_delivery(fake_github, {**comment, "id": comment["id"] + 200})
    edited["action"] = "edited"
    for payload, why in (
        (drive_by, "the commenter has no write access"),
        (bot, "a bot's comment"),
        (edited, "not a /kilo comment"),
    ):
        answered = deliver(hooks, "pull_request_review_comment", payload)
        assert answered.json() == {"outcome": "ignored", "detail": why}, answered.text
    assert hooks.get("/api/kilo/jobs").json() == {"jobs": []}
    assert [c for c in fake_github.review_comments if c["in_reply_to_id"]] == []


def test_a_redelivered_review_comment_is_one_job_on_the_pull_requests_branch(
    hooks: TestClient,  # noqa: F811
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
) -> None:
    comment = _feature(fake_github)
    payload = review_comment_delivery(fake_github, comment)
    first = deliver(hooks, "pull_request_review_comment", payload, delivery="rc-1")
    again = deliver(hooks, "pull_request_review_comment", payload, delivery="rc-2")  # the same event, re-sent
    assert first.json()["outcome"] == "started", first.text
    assert again.json() == {"outcome": "duplicate"}
    (job,) = hooks.get("/api/kilo/jobs").json()["jobs"]
    assert job["id"] == first.json()["jobId"] and job["agent"] == "apply-patch-and-pr"
    stored = redis_client.hgetall(f"{prefix}job:{job['id']}")
    assert stored[b"branch"] == b"feature" and stored[b"baseBranch"] == b"main"
    assert stored[b"notify"] == f"review-comment:9:{comment['id']}".encode()
    (reply,) = [c for c in fake_github.review_comments if c["in_reply_to_id"] == comment["id"]]
    assert f"started job [`{job['id']}`]" in reply["body"]


def test_kilo_on_a_pull_request_the_app_did_not_open_is_a_job_of_its_own(
    hooks: TestClient,  # noqa: F811
    fake_github: FakeGitHub,
) -> None:
    push(fake_github, "kilo/job_0123456789abcdef01234567", {"x.md": "x\n"}, "looks like the App's")
    fake_github.open_pull("widgets", 5, "kilo/job_0123456789abcdef01234567")  # no such job: not the App's
    started = deliver(hooks, "issue_comment", pr_comment(fake_github, 5, "/kilo fix the typo", 801))
    assert started.json()["outcome"] == "started", started.text
    job = hooks.get(f"/api/kilo/job/{started.json()['jobId']}").json()
    assert job.get("parentJobId") is None and job["agent"] == "apply-patch-and-pr"


@pytest.mark.slow
def test_a_thread_whose_job_is_ending_or_kept_no_conversation_is_told_so_and_nothing_starts(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    app_settings: dict[str, Any],  # noqa: F811
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(**app_settings)
    client = http_client(base_url=serve(settings), timeout=10)
    issue = pr_comment(fake_github, 5, "/kilo fix the typo in README", 901)
    del issue["issue"]["pull_request"]
    started = deliver(client, "issue_comment", issue)
    job = wait_job(client, started.json()["jobId"])
    assert job["status"] == "succeeded" and job["result"]["prUrl"].endswith("/acme/widgets/pull/1"), job
    # Seen while it was still pushing: its agent is done, so nothing can reach it and nothing starts yet.
    record = f"{prefix}job:{job['id']}"
    redis_client.hset(record, mapping={"status": "running", "phase": "pushing"})
    answered = deliver(client, "issue_comment", pr_comment(fake_github, 1, "/kilo and the other typo", 902))
    assert answered.json() == {"outcome": "refused", "detail": "job_ending"}, answered.text
    assert "is finishing" in fake_github.comments[-1]["body"] and fake_github.comments[-1]["number"] == 1
    redis_client.hset(record, mapping={"status": "succeeded", "phase": ""})

    # A `/kilo` review comment on a line of the App's own pull request continues its conversation too.
    (path,) = job["result"]["filesChanged"]
    comment = fake_github.review_comment("widgets", 1, path, 1, "/kilo say it louder")
    continued = deliver(client, "pull_request_review_comment", review_comment_delivery(fake_github, comment, 1))
    assert continued.json()["outcome"] == "started", continued.text
    follow_up = wait_job(client, continued.json()["jobId"])
    assert follow_up["parentJobId"] == job["id"] and follow_up["status"] == "succeeded", follow_up
    continued_on = redis_client.hget(f"{prefix}job:{follow_up['id']}", "branch")
    assert continued_on == f"kilo/{job['id']}".encode() and path in follow_up["prompt"]
    started, ended = [c["body"] for c in fake_github.review_comments if c["in_reply_to_id"] == comment["id"]]
    assert "a follow-up of" in started and follow_up["id"] in ended  # both in the review thread
    job = follow_up  # the thread's latest job now

    (Path(settings.artifacts_dir) / "jobs" / job["id"] / SESSION_ARTIFACT).unlink(missing_ok=True)

    answered = deliver(client, "issue_comment", pr_comment(fake_github, 1, "/kilo and now the other typo", 903))
    assert answered.json() == {"outcome": "refused", "detail": "conflict"}, answered.text
    assert len(client.get("/api/kilo/jobs").json()["jobs"]) == 2
    said = [c["body"] for c in fake_github.comments if c["number"] == 1]
    assert len(said) == 2 and "could not continue job" in said[1] and "kept no conversation" in said[1]
