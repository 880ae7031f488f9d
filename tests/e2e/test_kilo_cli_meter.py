"""The real pinned Kilo CLI behind the runner's meter: every model call it makes — the root session's, and a
title call `--format json` never reports when the CLI makes one (it is asynchronous: a run that ends first has
none) — is admitted and metered on the job's key."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub, make_repo
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job

pytestmark = pytest.mark.slow


def test_the_jobs_cost_is_every_call_the_cli_made_as_the_gateway_reported_it(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    fake.agent_plan = [{"tool": "write", "args": {"filePath": "HELLO.md", "content": "hello\n"}}]
    fake.agent_text = "Added HELLO.md."
    fake.script([{"kind": "ok", "cost": 0.0125}] * 20)  # OpenRouter's usage.cost on every answer
    client = http_client(base_url=serve(job_settings(real_cli=True)), timeout=10)
    response = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            prompt="Add a HELLO.md",
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    )
    job_id = response.json()["jobId"]
    job = wait_job(client, job_id, timeout=150)
    assert job["status"] == "succeeded", job
    calls = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    reported_steps = [d for k, d in log_events(client, job_id) if k == "log" and " done (" in d]
    assert len(calls) >= len(reported_steps) >= 2
    # Every call the gateway saw, reported or not, is in the job's cost: the meter's count, not the CLI's.
    assert job["result"]["costUsd"] == pytest.approx(0.0125 * len(calls))


def test_the_build_agent_runs_a_failing_test_suite_and_reports_it_without_pushing(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    make_repo(
        fake_github.root,
        "acme",
        "failing",
        {"README.md": "# failing\n", "test.sh": "echo '1 failing: test_add'\nexit 1\n"},
    )
    fake.agent_plan = [{"tool": "bash", "args": {"command": "sh test.sh", "description": "Run the tests"}}]
    fake.agent_text = "FAILED: sh test.sh exited 1 (1 failing: test_add)."
    client = http_client(base_url=serve(job_settings(real_cli=True)), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "failing"),
            agent="build",
            prompt=None,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=150)
    assert job["status"] == "succeeded", job  # the build failed; the job (a report) did its work
    assert job["result"]["summary"].startswith("FAILED") and job["result"]["filesChanged"] == []
    assert job["result"]["prUrl"] is None and fake_github.pulls == []
    # The real CLI ran the repository's tests and handed their output to the model.
    tool_results = [
        m.get("content")
        for c in fake.chats
        for m in c["json"].get("messages", [])
        if isinstance(m, dict) and m.get("role") == "tool"
    ]
    assert any("1 failing: test_add" in str(content) for content in tool_results), tool_results
