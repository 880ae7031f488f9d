"""Small holes an attacker finds from outside: a trigger call's timestamp in non-ASCII digits (401, not a 500);
`AGENT_SANDBOX=user` (every job's agent one user) refused on a host that runs several jobs at once; a job's
local artifacts readable by the server's user alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from kilo_bridge.config import ConfigError, Settings
from tests.fakes.fake_github import FakeGitHub
from tests.integration.triggers.test_triggers import ALERT, new_trigger, signed
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import ROOT


def test_a_trigger_timestamp_in_non_ascii_digits_is_401(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    http_client: Callable[..., httpx.Client],
) -> None:
    """Over a real socket: the header's raw bytes reach the app as latin-1 text (`²` is a digit to
    `str.isdigit`, not to `int`)."""
    client = http_client(base_url=serve(make_settings(auth_required=True)), timeout=10)
    trigger = new_trigger(client, {"Authorization": f"Bearer {key_factory('ci')}"})
    body = orjson.dumps(ALERT)
    for stamp in (b"\xb2", b"\xb9\xb2\xb3", b"1\xb2", b"\xbd"):  # ², ¹²³, 1², ½ in latin-1
        headers = {name.encode(): value.encode() for name, value in signed(trigger["secret"], body).items()}
        headers |= {b"X-Kilo-Timestamp": stamp, b"Content-Type": b"application/json"}
        response = client.post(f"/api/kilo/triggers/{trigger['id']}", content=body, headers=headers)
        assert response.status_code == 401, (stamp, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


def test_user_sandbox_is_refused_where_several_jobs_run_at_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="AGENT_SANDBOX=user is for one job per container"):
        make_settings(agent_sandbox="user", jobs_concurrency=2)
    assert make_settings(agent_sandbox="user", jobs_concurrency=1).agent_sandbox == "user"
    # on AWS the queue is SQS: one job per Fargate task, whatever the API's own setting
    assert make_settings(agent_sandbox="user", jobs_concurrency=4, job_queue="sqs").jobs_concurrency == 4
    # the worker command's own --concurrency too: a clear start-up error, no traceback, nothing started
    env = {**os.environ, "AGENT_SANDBOX": "user", "JOBS_CONCURRENCY": "1", "REDIS_URL": "redis://127.0.0.1:1/0"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "worker", "--concurrency", "3"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "AGENT_SANDBOX=user is for one job per container" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_jobs_local_artifacts_are_the_servers_users_alone(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless the store says otherwise
    try:
        settings = job_settings()
        client = http_client(base_url=serve(settings), timeout=10)
        body = run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN})
        job = wait_job(client, client.post("/api/kilo/run-agent", json=body).json()["jobId"])
    finally:
        os.umask(old)
    assert job["status"] == "succeeded", (job["reason"], job["error"])
    root = Path(settings.artifacts_dir)
    found = [root, *root.rglob("*")]
    assert any(p.name == "log.jsonl" for p in found)
    for path in found:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
