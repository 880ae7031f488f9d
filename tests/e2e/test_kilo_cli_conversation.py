"""Conversations with the real pinned Kilo CLI against the scripted fake gateway, real git remotes and the fake
GitHub: a follow-up continues its parent's CLI session (exported, sealed, imported) on the branch the parent
pushed, and the pull request the thread opened is updated, never duplicated."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from kilo_bridge.jobs.artifacts import SESSION_ARTIFACT
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _first_request_of(fake: FakeGatewayThread, marker: str) -> dict[str, Any]:
    """The first agent request (tools, streamed) whose latest user message is the one naming `marker`."""
    for chat in fake.chats:
        body = chat["json"]
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        if body.get("tools") and users and marker in json.dumps(users[-1]):
            return dict(body)
    raise AssertionError(f"no agent request for {marker}")


def _branch_log(fake_github: FakeGitHub, branch: str) -> list[str]:
    bare = str(fake_github.root / "acme" / "widgets.git")
    out = subprocess.run(
        ["git", "-C", bare, "log", "--format=%s%n%b", branch], capture_output=True, text=True, check=True
    ).stdout
    return [line.removeprefix("Kilo Bridge job ") for line in out.splitlines() if line.startswith("Kilo Bridge job")]


def test_follow_ups_continue_the_session_on_the_same_branch_and_pull_request(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    fake.agent_plans = {
        "MARK-ONE": [{"tool": "write", "args": {"filePath": "ONE.md", "content": "one\n"}}],
        "MARK-TWO": [{"tool": "write", "args": {"filePath": "TWO.md", "content": "two\n"}}],
        "MARK-THREE": [{"tool": "write", "args": {"filePath": "THREE.md", "content": "three\n"}}],
    }
    fake.agent_text = "Done as asked."
    settings = job_settings(real_cli=True, auth_required=True)
    base = serve(settings)
    mine = http_client(base_url=base, timeout=30, headers={"x-api-key": key_factory("mine")})
    theirs = http_client(base_url=base, timeout=30, headers={"x-api-key": key_factory("theirs")})
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        prompt="MARK-ONE: add ONE.md",
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
    )
    first = mine.post("/api/kilo/run-agent", json=body).json()["jobId"]
    job = wait_job(mine, first, timeout=150)
    assert job["status"] == "succeeded", job
    branch, pr_url = job["result"]["branch"], job["result"]["prUrl"]
    assert branch == f"kilo/{first}" and pr_url and len(fake_github.pulls) == 1

    # Another key: the job does not exist for it.
    assert theirs.post(f"/api/kilo/job/{first}/follow-up", json={"prompt": "x"}).status_code == 404

    second = _follow(mine, first, "MARK-TWO: add TWO.md")
    job2 = wait_job(mine, second, timeout=150)
    assert job2["status"] == "succeeded", job2
    asked = _first_request_of(fake, "MARK-TWO")
    said = json.dumps(asked["messages"])
    assert "MARK-ONE: add ONE.md" in said  # the parent's prompt
    assert any(m.get("role") == "tool" for m in asked["messages"])  # and the parent's tool result
    assert job2["result"]["branch"] == branch and job2["result"]["prUrl"] == pr_url
    assert _branch_log(fake_github, branch) == [second, first]  # on the parent's branch, after its commit
    assert len(fake_github.pulls) == 1  # the pull request updated, no second one

    third = _follow(mine, second, "MARK-THREE: add THREE.md")
    job3 = wait_job(mine, third, timeout=150)
    assert job3["status"] == "succeeded", job3
    said = json.dumps(_first_request_of(fake, "MARK-THREE")["messages"])
    assert "MARK-ONE" in said and "MARK-TWO" in said
    assert _branch_log(fake_github, branch) == [third, second, first] and len(fake_github.pulls) == 1
    bare = str(fake_github.root / "acme" / "widgets.git")
    files = subprocess.run(["git", "-C", bare, "ls-tree", "--name-only", branch], capture_output=True, text=True)
    assert {"ONE.md", "TWO.md", "THREE.md"} <= set(files.stdout.split())

    view = mine.get(f"/api/kilo/job/{third}").json()
    assert view["parentJobId"] == second
    assert [(t["jobId"], t["prompt"]) for t in view["thread"]] == [
        (first, "MARK-ONE: add ONE.md"),
        (second, "MARK-TWO: add TWO.md"),
        (third, "MARK-THREE: add THREE.md"),
    ]
    costs = [t["costUsd"] for t in view["thread"]]
    assert all(c > 0 for c in costs) and view["threadCostUsd"] == pytest.approx(sum(costs))
    # The sealed session is kept beside the artifacts, never listed nor served, to the owner or anyone else.
    for job_id in (first, second, third):
        shown = mine.get(f"/api/kilo/job/{job_id}").json()
        assert SESSION_ARTIFACT not in shown["artifacts"]
        assert mine.get(f"/api/kilo/job/{job_id}/artifacts/{SESSION_ARTIFACT}").status_code == 404
    assert theirs.get("/api/kilo/jobs").json()["jobs"] == []
    stored = (Path(settings.artifacts_dir) / "jobs" / first / SESSION_ARTIFACT).read_bytes()
    assert b"MARK-ONE" not in stored  # sealed


def test_follow_up_of_a_dry_run_continues_its_session_on_a_fresh_checkout(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    fake.agent_plans = {
        "MARK-DRY": [{"tool": "write", "args": {"filePath": "DRY.md", "content": "dry\n"}}],
        "MARK-REAL": [{"tool": "write", "args": {"filePath": "REAL.md", "content": "real\n"}}],
    }
    base = serve(job_settings(real_cli=True, auth_required=True))
    mine = http_client(base_url=base, timeout=30, headers={"x-api-key": key_factory("mine")})
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        prompt="MARK-DRY: add DRY.md",
        dryRun=True,
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
    )
    first = mine.post("/api/kilo/run-agent", json=body).json()["jobId"]
    assert wait_job(mine, first, timeout=150)["status"] == "succeeded"
    assert fake_github.pulls == []
    running = mine.post(f"/api/kilo/job/{first}/follow-up", json={"prompt": "MARK-REAL: add REAL.md"})
    assert running.status_code == 202 and running.json()["parentJobId"] == first
    job = wait_job(mine, running.json()["jobId"], timeout=150)
    assert job["status"] == "succeeded", job
    assert "MARK-DRY" in json.dumps(_first_request_of(fake, "MARK-REAL")["messages"])
    # Nothing to continue: a branch and pull request of its own; the dry run's file was never pushed.
    assert job["result"]["branch"] == f"kilo/{job['id']}" and len(fake_github.pulls) == 1
    assert job["result"]["filesChanged"] == ["REAL.md"]


def _follow(client: httpx.Client, parent: str, prompt: str) -> str:
    answer = client.post(f"/api/kilo/job/{parent}/follow-up", json={"prompt": prompt})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["parentJobId"] == parent and accepted["statusUrl"].endswith(accepted["jobId"])
    return str(accepted["jobId"])


def test_a_message_to_a_running_job_reaches_the_agents_next_request_and_the_live_log(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    redis_client: Any,
    prefix: str,
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    gate = tmp_path / "go"
    fake.agent_plans = {
        "MARK-STEER": [
            # The agent's first step waits for the test: the message is queued while it runs.
            {"tool": "bash", "args": {"command": f"until [ -e {gate} ]; do sleep 0.05; done", "description": "wait"}},
            {"tool": "write", "args": {"filePath": "STEERED.md", "content": "steered\n"}},
        ]
    }
    base = serve(job_settings(real_cli=True, auth_required=True))
    mine = http_client(base_url=base, timeout=90, headers={"x-api-key": key_factory("mine")})
    theirs = http_client(base_url=base, timeout=10, headers={"x-api-key": key_factory("theirs")})
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        prompt="MARK-STEER: wait, then write",
        dryRun=True,
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
    )
    job_id = mine.post("/api/kilo/run-agent", json=body).json()["jobId"]
    wait_job(mine, job_id, ("running",), timeout=120, phase="agent")
    deadline = time.monotonic() + 240
    while not any("MARK-STEER" in json.dumps(c["json"].get("messages")) for c in fake.chats):
        assert time.monotonic() < deadline, "the agent never asked the model"  # its first step: the gated command
        time.sleep(0.05)
    assert theirs.post(f"/api/kilo/job/{job_id}/messages", json={"text": "x"}).status_code == 404

    answers: list[httpx.Response] = []
    said = "Also use British spelling, please."
    sender = threading.Thread(
        target=lambda: answers.append(mine.post(f"/api/kilo/job/{job_id}/messages", json={"text": said}))
    )
    sender.start()
    inbox = f"{prefix}job:{job_id}:inbox"
    deadline = time.monotonic() + 30
    while not redis_client.exists(inbox):  # queued (an event, not a timer): now the agent may take its next step
        assert time.monotonic() < deadline, "the message was never queued"
        time.sleep(0.02)
    gate.touch()
    sender.join(90)
    assert answers and answers[0].status_code == 202, answers
    assert answers[0].json()["delivery"] == "delivered"
    job = wait_job(mine, job_id, timeout=120)
    assert job["status"] == "succeeded", job

    # The request after the message carries it as the user's, after the first step's tool result.
    carried = [c["json"] for c in fake.chats if c["json"].get("tools") and said in json.dumps(c["json"]["messages"])]
    assert carried, "no model request carried the message"
    messages = carried[0]["messages"]
    assert messages[-1] == {"role": "user", "content": said}
    assert any(m.get("role") == "tool" for m in messages)
    events = log_events(mine, job_id)
    assert any(kind == "log" and json.loads(data)["source"] == "user" and said in data for kind, data in events)

    ended = mine.post(f"/api/kilo/job/{job_id}/messages", json={"text": "too late"})
    assert ended.status_code == 409 and "follow-up" in ended.json()["error"]["message"]
