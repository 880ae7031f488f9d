"""The runner with the real pinned Kilo CLI (agent_task/node_modules), its model provider pointed at our
fake Kilo Gateway, which plays the model: a scripted tool call makes the real CLI write a real file."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable

import httpx
import pytest

from kilo_bridge.config import Settings, load_settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import ROOT, TEST_KEY

pytestmark = pytest.mark.slow
CLI = load_settings().kilo_cli_path


def test_pinned_cli_version_is_the_one_installed_and_shipped() -> None:
    pinned = json.loads((ROOT / "agent_task/package.json").read_text())["dependencies"]["@kilocode/cli"]
    docker = re.search(r"ARG KILO_CLI_VERSION=(\S+)", (ROOT / "agent_task/Dockerfile").read_text())
    assert docker and docker.group(1) == pinned
    installed = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    assert installed == pinned


def test_image_build_context_leaves_out_host_builds_and_secrets() -> None:
    # agent_task/Dockerfile COPYs agent_task/ after installing the pinned CLI: a host node_modules would
    # replace it, and .run/ holds the local job-secrets key.
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"**/node_modules", ".run", ".git", ".venv"} <= ignored


def test_real_cli_writes_a_file_and_the_job_opens_a_pull_request(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    fake.agent_plan = [{"tool": "write", "args": {"filePath": "HELLO.md", "content": "hello from kilo\n"}}]
    fake.agent_text = "Added HELLO.md as asked."
    client = http_client(base_url=serve(job_settings(real_cli=True)), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            prompt="Add a HELLO.md that greets the reader",
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=150)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["filesChanged"] == ["HELLO.md"] and result["summary"] == "Added HELLO.md as asked."
    assert result["steps"] == 2 and result["inputTokens"] > 0 and result["costUsd"] > 0  # priced from /models
    assert result["prUrl"] and fake_github.pulls[0]["head"] == f"kilo/{job_id}"
    bare = str(fake_github.root / "acme" / "widgets.git")
    shown = subprocess.run(["git", "-C", bare, "show", f"kilo/{job_id}:HELLO.md"], capture_output=True, text=True)
    assert shown.stdout == "hello from kilo\n"
    chats = fake.chats
    assert chats and all(c["headers"]["authorization"] == f"Bearer {TEST_KEY}" for c in chats)
    assert any(c["json"].get("tools") for c in chats)  # the CLI ran as an agent with tools


def test_review_agent_is_denied_edits_and_never_pushes(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    fake.agent_plan = [{"tool": "write", "args": {"filePath": "PWNED.md", "content": "should not exist\n"}}]
    fake.agent_text = "Findings: none."
    client = http_client(base_url=serve(job_settings(real_cli=True)), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            agent="review",
            prompt=None,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=150)
    assert job["status"] == "succeeded", job
    assert job["result"]["filesChanged"] == [], job
    assert job["result"]["prUrl"] is None and fake_github.pulls == []
    log = client.get(f"/api/kilo/job/{job_id}/logs").text
    assert "write PWNED.md (error)" in log, log  # the model asked to write; the agent's permissions refused
    # The task the catalogue gives the review agent reached the model.
    assert any("Review this repository" in json.dumps(c["json"]) for c in fake.chats)
