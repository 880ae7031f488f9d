"""What a job survives besides its worker's death (test_jobs_resilience.py): its runner SIGKILLed alone (the
worker, its parent, sees it at once: attempt 2 starts, or the job fails with the reason; the dead runner's
workspace, the agent's HOME included, is removed), and Redis paused mid-job (log lines and heartbeats wait
in the runner; the job succeeds with its log complete and in order)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, pid_alive, run_body, wait_job, workspaces
from tests.support import RedisServer

pytestmark = pytest.mark.slow


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def messages(api: httpx.Client, job_id: str) -> list[str]:
    return [json.loads(data)["msg"] for kind, data in log_events(api, job_id) if kind == "log"]


@pytest.mark.parametrize("attempts", [2, 1], ids=["rerun", "attempts-used-up"])
def test_a_killed_runner_is_seen_by_its_worker_at_once(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    attempts: int,
    http_client: Callable[..., httpx.Client],
) -> None:
    # Takeover and reaper far beyond the test's wait: only the worker's own notice can end or re-run the job.
    settings = job_settings(job_takeover_s=600, job_stale_s=600, job_max_attempts=attempts)
    api = http_client(base_url=serve(settings), timeout=10)
    pids, marker = tmp_path / "pids", tmp_path / "marker"
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "once", "FAKE_KILO_MARKER": str(marker)}
    body = run_body(fake_github.repo_url("acme", "widgets"), profileEnv={**env, "FAKE_KILO_PIDS": str(pids)})
    job_id = api.post("/api/kilo/run-agent", json=body).json()["jobId"]
    wait_for(pids)
    agent, child = map(int, pids.read_text().split())
    workdir = Path(settings.job_workdir or "")
    workspace = workdir / f"kb-job-{job_id}"
    assert (workspace / "agent").is_dir()  # the agent's HOME: the CLI's state lives there
    (workspace / "agent" / "session.db").write_text("unredacted output")
    r = redis.Redis.from_url(settings.resolved_redis_url, decode_responses=True)
    runner = int(str(r.hget(f"{settings.redis_prefix}job:{job_id}", "worker")).rpartition(":")[2])

    os.kill(runner, signal.SIGKILL)
    job = wait_job(api, job_id, timeout=60)

    if attempts == 2:
        assert (job["status"], job["attempt"]) == ("succeeded", 2), job
        assert job["result"]["filesChanged"] == ["CHANGE.md"]
        told = "the runner died (signal 9); the next attempt starts now"
    else:
        assert (job["status"], job["reason"], job["attempt"]) == ("failed", "runner_died", 1), job
        assert "signal 9" in job["error"]
        told = "the runner died (signal 9); no attempts left"
    assert told in messages(api, job_id)  # whoever watches the log is told
    assert not pid_alive(agent) and not pid_alive(child)  # the agent went with its runner
    assert workspaces(workdir) == []  # the dead runner's workspace, its agent's HOME included, is gone


@pytest.mark.parametrize("when", ["mid-agent", "at-the-end"])
def test_a_job_rides_out_redis_paused_for_five_seconds(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    own_redis: RedisServer,
    tmp_path: Path,
    when: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(redis_url=own_redis.url, job_takeover_s=60)
    api = http_client(base_url=serve(settings), timeout=10)
    lines, said_all = (60 if when == "mid-agent" else 5), tmp_path / "said-all"
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "chatty", "FAKE_KILO_LINES": str(lines)}
    env |= {"FAKE_KILO_EVERY": "0.15", "FAKE_KILO_MARKER": str(said_all)}
    job_id = api.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"), profileEnv=env))
    job_id = job_id.json()["jobId"]
    wait_job(api, job_id, ("running",), phase="agent", timeout=30)
    if when == "at-the-end":
        wait_for(said_all)  # the diff, the push, the pull request, the artifacts and the job's end follow

    own_redis.pause()  # nothing answers: every Redis call of the runner (and the server) hangs, then times out
    time.sleep(5)
    own_redis.resume()

    job = wait_job(api, job_id, timeout=60)
    assert (job["status"], job["attempt"]) == ("succeeded", 1), job
    assert job["result"]["filesChanged"] == ["CHANGE.md"]
    assert job["result"]["prUrl"]
    said = messages(api, job_id)
    assert [m for m in said if m.startswith("line ")] == [f"line {i}" for i in range(lines)]  # once each, in order
    assert said[0].startswith(f"job {job_id} attempt 1") and said[-1] == "job ended succeeded"
    assert len(said) == len(set(said))
    assert workspaces(Path(settings.job_workdir or "")) == []


async def test_live_log_lines_wait_out_a_paused_redis_and_go_once_each_in_order(
    make_settings: Callable[..., Settings], own_redis: RedisServer, tmp_path: Path
) -> None:
    from agent_task.joblog import BATCH_MAX, JobLog
    from kilo_bridge.jobs.store import JobStore
    from kilo_bridge.platform.redis import Store
    from kilo_bridge.platform.security import Redactor

    store = Store(make_settings(redis_url=own_redis.url, redis_timeout_ms=300))
    jobs = JobStore(store)
    job_id = "job_" + "0" * 24
    log = JobLog(jobs, job_id, Redactor([]), tmp_path / "log.jsonl", 10_000_000, attempt=1)
    try:
        await log.line("kilo", "before")
        await log.flush()
        own_redis.pause()
        for i in range(BATCH_MAX * 2):  # full batches too: neither raises nor waits for Redis
            await log.line("kilo", f"during {i}")
        await asyncio.sleep(1)  # the timer's writes time out (Redis runs them on resume: a lost reply)
        own_redis.resume()
        await log.line("kilo", "after")
        await log.close(patience_s=30)
        live = [json.loads(text)["msg"] for _, text in await jobs.read_log(job_id, count=10_000)]
    finally:
        await store.close()
    assert live == ["before", *(f"during {i}" for i in range(BATCH_MAX * 2)), "after"]
