"""The agent task's runner as the Fargate task runs it (`python -m agent_task JOB_ID`, its own process): under the
cache user of its own that template.yaml defines (the ACL applied to a redis-server of the test's own), and stopped
by ECS's SIGTERM (a stop-task, a scale-in), which ends the job `cancelled` with its partial result kept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
import yaml

from kilo_bridge.config import Settings, settings_env
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import ROOT, RedisServer

RUNNER_PASSWORD = "runner-password-not-real"


def runner_acl() -> list[str]:
    """The runner user's ACL rules, as template.yaml gives them to ElastiCache (its AccessString)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    tpl = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506  (a SafeLoader subclass)
    user = tpl["Resources"]["CacheRunnerUser"]["Properties"]
    assert user["UserName"] == "kilo-bridge-runner"
    return str(user["AccessString"]).split()


def start_runner(settings: Settings, job_id: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent_task", job_id],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def submit(api: httpx.Client, fake_github: FakeGitHub, **profile: str) -> str:
    body = run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, **profile})
    accepted = api.post("/api/kilo/run-agent", json=body)
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["jobId"])


def test_a_job_runs_to_its_end_under_the_runners_own_cache_user(
    tmp_path: Any,
    job_settings: Callable[..., Settings],
    serve: Callable[..., str],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    own = RedisServer(tmp_path)
    own.start()
    try:
        admin = redis.Redis(port=own.port)
        admin.execute_command("ACL", "SETUSER", "kilo-bridge-runner", "reset", f">{RUNNER_PASSWORD}", *runner_acl())
        # The deployment's prefix: the ACL's key patterns name it.
        settings = job_settings(redis_url=own.url, redis_prefix="{kb}:", jobs_concurrency=0)
        api = http_client(base_url=serve(settings), timeout=30)
        job_id = submit(api, fake_github, FAKE_KILO_MODE="write")
        runner_url = f"redis://kilo-bridge-runner:{RUNNER_PASSWORD}@127.0.0.1:{own.port}/0"
        runner = start_runner(settings, job_id, REDIS_URL=runner_url, BRIDGE_URL=str(api.base_url).rstrip("/"))
        output, _ = runner.communicate(timeout=120)
        assert runner.returncode == 0, output
        assert "NOPERM" not in output, output
        job = wait_job(api, job_id)
        assert job["status"] == "succeeded", (job.get("reason"), job.get("error"), output[-3000:])
        assert job["result"]["prUrl"] and job["result"]["filesChanged"] == ["CHANGE.md"]

        # What the runner's password cannot open: the keys' list, profiles, triggers, schedules, the whole keyspace.
        runner_client = redis.Redis(port=own.port, username="kilo-bridge-runner", password=RUNNER_PASSWORD)
        for command in (
            ("SMEMBERS", "{kb}:apikeys"),
            ("HGETALL", "{kb}:profile:owner:name"),
            ("HGETALL", "{kb}:trigger:t1"),
            ("HGETALL", "{kb}:schedule:s1"),
            ("SCAN", "0"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "*"),
            ("GET", "other-service:secret"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                runner_client.execute_command(*command)
    finally:
        own.stop()


def test_the_metering_of_a_jobs_model_calls_works_under_the_runners_cache_user(
    tmp_path: Any, key_factory: Callable[..., str]
) -> None:
    """What the runner does when it serves its agent's model calls itself: admission and settlement on the job's
    key (the usage ledger's key families), here straight through the ledger as the runner's user."""
    from kilo_bridge.config import load_settings
    from kilo_bridge.keys.store import digest
    from kilo_bridge.platform.redis import Store
    from kilo_bridge.usage.ledger import Ledger, Outcome

    own = RedisServer(tmp_path)
    own.start()
    try:
        redis.Redis(port=own.port).execute_command(
            "ACL", "SETUSER", "kilo-bridge-runner", "reset", f">{RUNNER_PASSWORD}", *runner_acl()
        )
        key = key_factory(budget_usd=5, settings=load_settings(redis_url=own.url, redis_prefix="{kb}:"))
        runner = load_settings(
            redis_url=f"redis://kilo-bridge-runner:{RUNNER_PASSWORD}@127.0.0.1:{own.port}/0", redis_prefix="{kb}:"
        )

        async def meter() -> None:
            store = Store(runner)
            try:
                ledger = Ledger(store)
                admission = await ledger.admit(digest(key), 1_000_000)
                outcome = Outcome(model="fake/model-a", ok=True, prompt_tokens=10, completion_tokens=5)
                await ledger.record(outcome, 500_000, admission)
            finally:
                await store.close()

        asyncio.run(meter())
    finally:
        own.stop()


def test_sigterm_ends_the_job_cancelled_with_its_partial_result(
    job_settings: Callable[..., Settings],
    serve: Callable[..., str],
    fake_github: FakeGitHub,
    fake: FakeGatewayThread,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(jobs_concurrency=0)
    api = http_client(base_url=serve(settings), timeout=30)
    job_id = submit(api, fake_github, FAKE_KILO_MODE="steps", FAKE_KILO_STEPS="200", FAKE_KILO_STEP_COST="0")
    runner = start_runner(settings, job_id, BRIDGE_URL=str(api.base_url).rstrip("/"))
    try:
        deadline = time.monotonic() + 60
        while len(fake.chats) < 2:  # the agent has done some of its work: a step written, the next one asked
            assert time.monotonic() < deadline, api.get(f"/api/kilo/job/{job_id}").json()
            assert runner.poll() is None, runner.stdout.read() if runner.stdout else ""
            time.sleep(0.1)
        runner.send_signal(signal.SIGTERM)  # what ECS sends to the container's init, which passes it on
        output, _ = runner.communicate(timeout=30)  # inside the task definition's StopTimeout (30 s)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
    assert runner.returncode == 0, output
    job = wait_job(api, job_id)
    assert job["status"] == "cancelled", job
    # The partial change is kept (the audit), not thrown away with the task.
    assert job["result"]["diffStat"]["files"] >= 1, job
    assert any(f.startswith("step-") for f in job["result"]["filesChanged"]), job
