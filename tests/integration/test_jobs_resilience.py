"""A worker SIGKILLed mid-job: its runner and agent die with it, the job is not left `running`: another
worker takes it over (attempt 2). And when no worker comes back, the reaper fails it with a reason."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kilo_bridge.config import Settings, settings_env
from kilo_bridge.jobs import JobStore
from kilo_bridge.store import Store
from tests.conftest import ROOT
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, pid_alive, run_body, wait_job

pytestmark = pytest.mark.slow


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.Popen([sys.executable, "-m", "kilo_bridge", "worker"], cwd=ROOT, env=env,
                            start_new_session=True)


def test_job_survives_its_worker_being_killed(serve: Callable[..., str], job_settings: Callable[..., Settings],
                                              fake_github: FakeGitHub, tmp_path: Path) -> None:
    settings = job_settings()
    api = httpx.Client(base_url=serve(job_settings(jobs_concurrency=0)), timeout=10)  # the API alone
    pids, marker = tmp_path / "pids", tmp_path / "marker"
    job_id = api.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"), profileEnv={
        "GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "once", "FAKE_KILO_MARKER": str(marker),
        "FAKE_KILO_PIDS": str(pids)})).json()["jobId"]
    first = start_worker(settings)
    try:
        wait_job(api, job_id, ("running",), phase="agent", timeout=30)
        deadline = time.monotonic() + 20
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    agent, child = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while (pid_alive(agent) or pid_alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(agent) and not pid_alive(child), "the agent outlived its worker"
    assert api.get(f"/api/kilo/job/{job_id}").json()["status"] == "running"  # nobody has noticed yet

    second = start_worker(settings)
    try:
        job = wait_job(api, job_id, timeout=60)
    finally:
        second.terminate()
        second.wait(10)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    assert job["result"]["filesChanged"] == ["CHANGE.md"]


async def test_reaper_fails_a_job_whose_heartbeat_stopped(job_settings: Callable[..., Settings]) -> None:
    settings = job_settings(job_stale_s=0.5, job_max_attempts=1)
    store = Store(settings)
    jobs = JobStore(store)
    try:
        job_id = "job_" + "ab" * 12
        await jobs.create(job_id, {"id": job_id, "status": "queued", "agent": "review", "repoUrl": "/x",
                                   "timeoutMs": 60_000, "createdMs": 1, "owner": ""}, "", None, None, 0)
        claim = await jobs.claim(job_id, None, "w1")
        assert claim.verdict == "ok"
        await asyncio.sleep(0.7)  # no heartbeat from the (dead) runner
        assert await jobs.reap() == {job_id: "failed"}
        record = await jobs.get(job_id)
        assert record is not None
        assert (record["status"], record["reason"]) == ("failed", "heartbeat_lost")
        # a finished job never runs again
        assert (await jobs.claim(job_id, None, "w2")).verdict == "done"
        assert await jobs.finish(job_id, None, claim.attempt, "succeeded", {}) is False
    finally:
        await store.close()
