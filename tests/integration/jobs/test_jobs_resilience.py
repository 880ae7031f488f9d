"""A worker SIGKILLed mid-job, or stopped (SIGTERM) with a job still running past JOB_SHUTDOWN_GRACE_S: its
runner and agent die with it, the job is not left `running`: another worker takes it over (attempt 2). A job
that ends within the grace ends normally. When no worker comes back, the reaper fails the job with a reason."""

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
from kilo_bridge.jobs.record import JobRecord
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.platform.redis import Store
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, pid_alive, run_body, wait_job
from tests.support import ROOT, text

pytestmark = pytest.mark.slow


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.Popen([sys.executable, "-m", "kilo_bridge", "worker"], cwd=ROOT, env=env, start_new_session=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_job_survives_its_worker_being_killed(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    sig: signal.Signals,
    http_client: Callable[..., httpx.Client],
) -> None:
    url = serve(job_settings(jobs_concurrency=0))  # the API alone
    api = http_client(base_url=url, timeout=10)
    settings = job_settings(job_shutdown_grace_s=1, bridge_url=url)  # its agents meter through that server
    pids, marker = tmp_path / "pids", tmp_path / "marker"
    job_id = api.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "once",
                "FAKE_KILO_MARKER": str(marker),
                "FAKE_KILO_PIDS": str(pids),
            },
        ),
    ).json()["jobId"]
    first = start_worker(settings)
    try:
        wait_job(api, job_id, ("running",), phase="agent", timeout=30)
        deadline = time.monotonic() + 20
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(sig)
        first.wait(10)  # SIGTERM: 1 s of grace, then the runner is stopped
    finally:
        if first.poll() is None:
            first.kill()
    agent, child = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while (pid_alive(agent) or pid_alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(agent) and not pid_alive(child), "the agent outlived its worker"
    assert api.get(f"/api/kilo/job/{job_id}").json()["status"] == "running"  # nobody has noticed yet
    if sig == signal.SIGTERM:
        assert first.returncode == 0

    second = start_worker(settings)
    try:
        job = wait_job(api, job_id, timeout=60)
    finally:
        second.terminate()
        second.wait(10)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    assert job["result"]["filesChanged"] == ["CHANGE.md"]
    told = [data for kind, data in log_events(api, job_id) if "worker stopped during the run" in data]
    assert len(told) == (1 if sig == signal.SIGTERM else 0)  # whoever watches the log is told


def test_stopping_a_worker_lets_a_running_job_finish_within_the_grace(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    url = serve(job_settings(jobs_concurrency=0))
    api = http_client(base_url=url, timeout=10)
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "steps", "FAKE_KILO_STEPS": "8", "FAKE_KILO_STEP_COST": "0"}
    body = run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv=env)
    job_id = api.post("/api/kilo/run-agent", json=body).json()["jobId"]
    worker = start_worker(job_settings(job_shutdown_grace_s=60, bridge_url=url))
    try:
        wait_job(api, job_id, ("running",), phase="agent", timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    job = api.get(f"/api/kilo/job/{job_id}").json()
    assert (job["status"], job["attempt"]) == ("succeeded", 1), job  # finished before the worker left
    assert len(job["result"]["filesChanged"]) == 8


async def test_reaper_fails_a_job_whose_heartbeat_stopped(
    job_settings: Callable[..., Settings], job_factory: Callable[..., JobRecord]
) -> None:
    settings = job_settings(job_stale_s=0.5, job_max_attempts=1)
    store = Store(settings)
    jobs = JobStore(store)
    try:
        job_id = job_factory(created_ms=1).id
        claim = await jobs.claim(job_id, None, "w1")
        assert claim.verdict == "ok"
        await asyncio.sleep(0.7)  # no heartbeat from the (dead) runner
        assert await jobs.reap() == {job_id: "failed"}
        record = await jobs.get(job_id)
        assert record is not None
        assert (record.status, record.reason) == ("failed", "heartbeat_lost")
        # a finished job never runs again
        assert (await jobs.claim(job_id, None, "w2")).verdict == "done"
        assert await jobs.finish(job_id, None, claim.attempt, "succeeded", {}) is False
    finally:
        await store.close()


async def test_a_lost_job_costs_its_key_the_reservation_and_a_never_run_one_nothing(
    job_settings: Callable[..., Settings], key_factory: Callable[..., str], job_factory: Callable[..., JobRecord]
) -> None:
    from kilo_bridge.keys.store import digest, key_record

    settings = job_settings(job_stale_s=0.5, job_max_attempts=1)
    store = Store(settings)
    jobs = JobStore(store)
    try:
        owner = digest(key_factory("ci", budget_usd=10))
        # job_factory asserts that JobStore.create accepted each one (code 0)
        lost, cancelled = (job_factory(owner=owner, reserve_nusd=2_000_000_000).id for _ in range(2))
        key = key_record(store, owner)
        assert int(await store.field(key, "reserved_nusd") or 0) == 4_000_000_000
        assert await jobs.cancel(cancelled, owner) == "cancelled"  # never ran: released, not charged
        assert (await jobs.claim(lost, owner, "w1")).verdict == "ok"
        await asyncio.sleep(0.7)  # its runner died: no heartbeat, no cost report
        assert await jobs.reap() == {lost: "failed"}
        spend, reserved = (int(text(v)) for v in await store.fields(key, "spend_nusd", "reserved_nusd"))
        assert (spend, reserved) == (2_000_000_000, 0)
    finally:
        await store.close()
