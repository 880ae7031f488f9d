"""The task path as it runs on Fargate, locally: the runner as root, `AGENT_SANDBOX=user` (no namespaces), the
agent as a user made like the image's (`useradd` in agent_task/Dockerfile), the real pinned CLI and a scripted
model whose answer takes 45 s. The agent's model calls go to the endpoint its runner serves on loopback (never
through a public API route, its usage-plan key or its 29 s cut), with no per-call limit below the job's own
timeout, and are metered on the job's key."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(os.geteuid() != 0, reason="the task path's runner is root, to start the agent as its user"),
]
AGENT_USER = "kilo-agent"
SLOW_MS = 45_000


def _exists(user: str) -> bool:
    return subprocess.run(["id", "-u", user], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def agent_user() -> str:
    """The image's user: `useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --uid 10001`
    (another uid when 10001 is taken here)."""
    if not _exists(AGENT_USER):
        uid = ["--uid", "10001"] if subprocess.run(["getent", "passwd", "10001"], check=False).returncode else []
        argv = ["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
        done = subprocess.run([*argv, *uid, AGENT_USER], capture_output=True, check=False)
        assert done.returncode == 0 or _exists(AGENT_USER), done.stderr  # made meanwhile by another run: fine
    return AGENT_USER


@pytest.fixture
def task_workdir() -> Iterator[Path]:
    """Like the image's /work: the runner's, 0711 (the agent passes through to its own job, lists nothing)."""
    path = Path(tempfile.mkdtemp(prefix="kb-task-work-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_job_whose_model_step_takes_45_s_succeeds_on_the_task_path(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    agent_user: str,
    task_workdir: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(real_cli=True, agent_sandbox="user", agent_user=agent_user, job_workdir=str(task_workdir))
    fake.agent_plan = [{"tool": "write", "args": {"filePath": "HELLO.md", "content": "hello\n"}}]
    fake.agent_text = "Added HELLO.md."
    # The first answers take 45 s before their first byte (a title call, when the CLI makes one, may come first).
    fake.script([{"kind": "ok", "latency_ms": SLOW_MS, "cost": 0.01}] * 2 + [{"kind": "ok", "cost": 0.01}] * 20)
    client = http_client(base_url=serve(settings), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            prompt="Add a HELLO.md",
            timeoutMs=300_000,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=380)
    log = client.get(f"/api/kilo/job/{job_id}/logs").text

    assert job["status"] == "succeeded", (job["reason"], job["error"])
    assert job["result"]["filesChanged"] == ["HELLO.md"]
    calls = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    assert len(calls) >= 2  # the slow tool call, then the closing text
    assert job["result"]["costUsd"] == pytest.approx(0.01 * len(calls))
    assert "sandbox: user" in log
