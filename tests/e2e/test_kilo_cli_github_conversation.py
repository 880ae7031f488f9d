"""Conversations on GitHub end to end: signed deliveries to the real server's webhook, the real pinned Kilo CLI
against the scripted fake gateway, real git remotes and the fake GitHub (built from GitHub's REST and webhook
docs). A `/kilo` comment on the pull request the App opened continues that pull request's conversation (its
session, its branch, the same pull request); a `/kilo` review comment on a line fixes the pull request's own
branch and answers in the comment's thread."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.e2e.test_kilo_cli_conversation import _branch_log, _first_request_of
from tests.e2e.test_kilo_cli_review import APP_PY, push
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.integration.github.test_github_app import app_settings, deliver, repository  # noqa: F401
from tests.integration.github.test_github_conversations import pr_comment, review_comment_delivery
from tests.jobkit import wait_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # three real-CLI jobs on a shared machine


def pr_bodies(fake_github: FakeGitHub, number: int) -> list[str]:
    return [c["body"] for c in fake_github.comments if c["number"] == number]


@pytest.fixture
def client(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    app_settings: dict[str, Any],  # noqa: F811
    http_client: Callable[..., httpx.Client],
) -> httpx.Client:
    settings = job_settings(real_cli=True, public_base_url="https://bridge.example", **app_settings)
    return http_client(base_url=serve(settings), timeout=30)


def test_kilo_on_the_apps_pull_request_continues_its_conversation_on_that_pull_request(
    client: httpx.Client,
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    fake.agent_plans = {
        "MARK-ONE": [{"tool": "write", "args": {"filePath": "ONE.md", "content": "one\n"}}],
        "MARK-TWO": [
            # The second job's first step waits for the test: a `/kilo` said meanwhile reaches the running agent.
            {"tool": "bash", "args": {"command": f"until [ -e {gate} ]; do sleep 0.05; done", "description": "wait"}},
            {"tool": "write", "args": {"filePath": "TWO.md", "content": "two\n"}},
        ],
        "MARK-THREE": [{"tool": "write", "args": {"filePath": "THREE.md", "content": "three\n"}}],
    }
    fake.agent_text = "Done as asked."
    issue = {
        "action": "created",
        "issue": {"number": 5, "title": "Needs ONE.md", "body": "Please."},
        "comment": {"id": 501, "body": "/kilo MARK-ONE: add ONE.md", "user": {"login": "maintainer", "type": "User"}},
        "repository": {**repository(fake_github), "id": 4401},
    }
    started = deliver(client, "issue_comment", issue)
    assert started.json()["outcome"] == "started", started.text
    first = started.json()["jobId"]
    job1 = wait_job(client, first, timeout=200)
    assert job1["status"] == "succeeded", job1
    pr_url = f"{fake_github.url}/acme/widgets/pull/1"
    assert job1["result"]["prUrl"] == pr_url and job1["result"]["branch"] == f"kilo/{first}"

    # `/kilo` on that pull request: a follow-up of the job that opened it.
    second_said = deliver(client, "issue_comment", pr_comment(fake_github, 1, "/kilo MARK-TWO: add TWO.md", 601))
    assert second_said.json()["outcome"] == "started", second_said.text
    second = second_said.json()["jobId"]
    view = client.get(f"/api/kilo/job/{second}").json()
    assert view["parentJobId"] == first
    assert redis_client.get(f"{prefix}github:thread:4401:1") == second.encode()
    (started_reply,) = [b for b in pr_bodies(fake_github, 1) if second in b]
    assert "a follow-up of" in started_reply and first in started_reply

    # While it runs, a `/kilo` on the pull request is a message to its agent, not another job.
    wait_job(client, second, ("running",), timeout=200, phase="agent")
    deadline = time.monotonic() + 240
    while not any("MARK-TWO" in json.dumps(c["json"].get("messages")) for c in fake.chats):
        assert time.monotonic() < deadline, "the agent never asked the model"
        time.sleep(0.05)
    steer = "/kilo Also mention British spelling in the commit."
    steered = deliver(client, "issue_comment", pr_comment(fake_github, 1, steer, 602))
    assert steered.json() == {"outcome": "steered", "jobId": second}, steered.text
    assert "still running" in pr_bodies(fake_github, 1)[-1]
    gate.touch()
    job2 = wait_job(client, second, timeout=200)
    assert job2["status"] == "succeeded", job2
    said = "Also mention British spelling in the commit."
    assert any(said in json.dumps(c["json"].get("messages")) for c in fake.chats if c["json"].get("tools"))

    # The follow-up continued the parent's session, on its branch, and updated its pull request.
    asked = _first_request_of(fake, "MARK-TWO")
    assert "MARK-ONE: add ONE.md" in json.dumps(asked["messages"])  # the parent's prompt
    assert any(m.get("role") == "tool" for m in asked["messages"])  # and its tool result
    assert job2["result"]["branch"] == f"kilo/{first}" and job2["result"]["prUrl"] == pr_url
    assert _branch_log(fake_github, f"kilo/{first}") == [second, first]
    assert len(fake_github.pulls) == 1
    # Its outcome is on the pull request's thread, not on the issue the conversation began on.
    outcome = pr_bodies(fake_github, 1)[-1]
    assert outcome.startswith(f"Kilo Bridge job [`{second}`](") and outcome.split("\n")[0].endswith(
        f"succeeded: pull request {pr_url} updated"
    )
    assert not any(second in b for b in pr_bodies(fake_github, 5))

    # The next `/kilo` continues the latest job of the thread: the second, not the first.
    third_said = deliver(client, "issue_comment", pr_comment(fake_github, 1, "/kilo MARK-THREE: add THREE.md", 603))
    assert third_said.json()["outcome"] == "started", third_said.text
    third = third_said.json()["jobId"]
    job3 = wait_job(client, third, timeout=200)
    assert job3["status"] == "succeeded", job3
    assert job3["parentJobId"] == second
    assert "MARK-TWO" in json.dumps(_first_request_of(fake, "MARK-THREE")["messages"])
    assert _branch_log(fake_github, f"kilo/{first}") == [third, second, first] and len(fake_github.pulls) == 1
    assert pr_bodies(fake_github, 1)[-1].split("\n")[0].endswith(f"succeeded: pull request {pr_url} updated")


def test_a_kilo_review_comment_pushes_its_fix_to_the_pull_requests_branch_and_replies_in_its_thread(
    client: httpx.Client, fake: FakeGatewayThread, fake_github: FakeGitHub
) -> None:
    before = push(fake_github, "feature", {"app.py": APP_PY}, "app")
    fake_github.open_pull("widgets", 9, "feature", user="contributor")
    fake.agent_plans = {"MARK-FIX": [{"tool": "write", "args": {"filePath": "FIXED.md", "content": "fixed\n"}}]}
    comment = fake_github.review_comment(
        "widgets", 9, "app.py", 5, "/kilo MARK-FIX: f2 must return 20, not 2", start_line=4
    )
    started = deliver(client, "pull_request_review_comment", review_comment_delivery(fake_github, comment))
    assert started.status_code == 202 and started.json()["outcome"] == "started", started.text
    job = wait_job(client, started.json()["jobId"], timeout=250)
    assert job["status"] == "succeeded", (job.get("reason"), job.get("error"))

    # The prompt: the maintainer's task, then the file, the lines and the hunk, fenced, the author named.
    prompt = job["prompt"]
    assert prompt.startswith("MARK-FIX: f2 must return 20, not 2")
    fence = r'<github-data-[0-9a-f]{16} author="@contributor" field="(\w+)">\n(.*?)\n</github-data-'
    fences = dict(re.findall(fence, prompt, re.DOTALL))
    assert fences["path"] == "app.py"
    assert fences["lines"].startswith("4-5")
    assert fences["diff_hunk"] == comment["diff_hunk"] and comment["diff_hunk"].endswith("+    return 2")
    asked = json.dumps(_first_request_of(fake, "MARK-FIX")["messages"])
    assert json.dumps(comment["diff_hunk"])[1:-1] in asked and 'field=\\"path\\">\\napp.py' in asked

    # The fix is on the pull request's own branch, after its commit; no pull request was opened.
    bare = str(fake_github.root / "acme" / "widgets.git")
    log = subprocess.run(
        ["git", "-C", bare, "log", "--format=%H %b", "-2", "feature"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert f"Kilo Bridge job {job['id']}" in log[0] and before in "\n".join(log[1:])
    files = subprocess.run(["git", "-C", bare, "ls-tree", "--name-only", "feature"], capture_output=True, text=True)
    assert "FIXED.md" in files.stdout.split()
    assert fake_github.pulls == [] and job["result"]["branch"] == "feature"

    # Both replies are in the comment's thread; nothing on the pull request's conversation.
    replies = [c["body"] for c in fake_github.review_comments if c["in_reply_to_id"] == comment["id"]]
    assert len(replies) == 2, replies
    assert f"started job [`{job['id']}`]" in replies[0] and "`feature`" in replies[0]
    assert replies[1].startswith(f"Kilo Bridge job [`{job['id']}`](https://bridge.example/api/kilo/job/{job['id']})")
    assert replies[1].split("\n")[0].endswith("succeeded: pushed to `feature`.")
    assert fake_github.comments == []
