"""Schedules through the API on real Redis: one created through the API fires on the local queue (bullmq job
schedulers; SCHEDULE_TEST_EVERY_MS stands in for the cron) into a run as its owner; pause, resume and delete
reach the queue; on AWS (moto server) they become EventBridge Scheduler schedules whose input
functions/scheduled turns into the run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from kilo_bridge.platform import aws
from kilo_bridge.scheduled_tasks import run_task
from kilo_bridge.schedules.backends import LocalScheduler
from kilo_bridge.schedules.local import ScheduleWorker
from kilo_bridge.services import Services, local_workers
from tests.support import text, text_hash

REPO = "https://github.com/acme/widgets"
RUN = {"repoUrl": REPO, "agent": "dependency-update", "prompt": "Update the lock file", "maxCostUsd": 1.5}


def schedule_body(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly deps", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "run": RUN} | fields


def job_records(client: redis.Redis, prefix: str) -> list[dict[str, str]]:
    return [
        text_hash(client, text(k)) for k in client.scan_iter(match=f"{prefix}job:job_*") if client.type(k) == b"hash"
    ]


@pytest.fixture
def keyed(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings], key_factory: Callable[..., str]
) -> Callable[..., tuple[TestClient, dict[str, str], str, Settings]]:
    def build(**overrides: Any) -> tuple[TestClient, dict[str, str], str, Settings]:
        secret = key_factory("ci")
        settings = make_settings(auth_required=True, **overrides)
        return make_app_client(settings), {"Authorization": f"Bearer {secret}"}, secret, settings

    return build


def is_scheduled(settings: Settings, schedule_id: str) -> bool:
    async def get() -> bool:
        local = LocalScheduler(settings)
        try:
            return bool(await local.queue().isJobScheduler(schedule_id))
        finally:
            await local.close()

    return asyncio.run(get())


def test_a_schedule_made_through_the_api_fires_on_the_local_queue_as_its_owner(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str, Settings]],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    client, mine, api_key, settings = keyed(schedule_test_every_ms=300)
    created = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["state"] == "enabled" and schedule["nextRunAt"] and schedule["run"]["agent"] == "dependency-update"
    assert is_scheduled(settings, schedule["id"])

    async def fire_until_a_job() -> None:
        worker = ScheduleWorker(settings)
        await worker.start()
        try:
            deadline = time.monotonic() + 30
            while not job_records(redis_client, prefix) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            await worker.close()

    asyncio.run(fire_until_a_job())
    jobs = job_records(redis_client, prefix)
    assert jobs, "the schedule never fired into a job"
    job = jobs[0]
    assert job["agent"] == "dependency-update" and job["repoUrl"] == REPO
    assert job["prompt"] == "Update the lock file" and job["owner"] == digest(api_key)
    assert job["requestId"] == "scheduled"

    path = f"/api/kilo/schedules/{schedule['id']}"
    paused = client.post(path + "/pause", headers=mine)
    assert paused.status_code == 200 and paused.json()["state"] == "paused" and paused.json()["nextRunAt"] is None
    assert not is_scheduled(settings, schedule["id"])  # the queue fires it no more
    resumed = client.post(path + "/resume", headers=mine)
    assert resumed.json()["state"] == "enabled" and is_scheduled(settings, schedule["id"])
    assert [s["id"] for s in client.get("/api/kilo/schedules", headers=mine).json()["schedules"]] == [schedule["id"]]
    assert client.delete(path, headers=mine).status_code == 204
    assert not is_scheduled(settings, schedule["id"])
    assert client.get(path, headers=mine).status_code == 404


def test_the_local_workers_the_server_starts_fire_the_schedules_too(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str, Settings]],
    redis_client: redis.Redis,
    prefix: str,
    tmp_path: Path,
) -> None:
    """`kilo-bridge worker` and the app's lifespan start the job worker through `local_workers`: the schedule
    worker comes with it (the job worker itself knows nothing of schedules)."""
    # The job worker runs what fires: a local directory (not a repository) makes that run end at its clone,
    # on this machine.
    client, mine, _, settings = keyed(schedule_test_every_ms=300, job_shutdown_grace_s=0, repo_allow_local=True)
    run = {**RUN, "repoUrl": str(tmp_path)}
    created = client.post("/api/kilo/schedules", json=schedule_body(run=run), headers=mine)
    assert created.status_code == 201, created.text

    async def fire_until_a_job() -> None:
        async with local_workers(settings):
            deadline = time.monotonic() + 30
            while not job_records(redis_client, prefix) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)

    asyncio.run(fire_until_a_job())
    jobs = job_records(redis_client, prefix)
    assert jobs, "the schedule never fired into a job"
    assert jobs[0]["requestId"] == "scheduled"
    assert client.delete(f"/api/kilo/schedules/{created.json()['id']}", headers=mine).status_code == 204


def test_a_firing_starts_one_run_and_a_paused_schedule_none(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str, Settings]],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    client, mine, _, settings = keyed()
    schedule = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine).json()

    async def fire(times: int) -> list[Any]:
        services = Services.build(settings)
        try:
            return [await services.schedules.fire(schedule["id"], "20260101T0300") for _ in range(times)]
        finally:
            await services.close()

    first, again = asyncio.run(fire(2))
    assert first is not None and again is not None and first.job_id == again.job_id  # a redelivery: one run
    assert len(job_records(redis_client, prefix)) == 1
    client.post(f"/api/kilo/schedules/{schedule['id']}/pause", headers=mine)
    assert asyncio.run(fire(1)) == [None]
    client.delete(f"/api/kilo/schedules/{schedule['id']}", headers=mine)


def test_schedules_are_refused_when_too_frequent_or_secret_bearing_and_anothers_are_absent(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str, Settings]], key_factory: Callable[..., str]
) -> None:
    client, mine, _, _ = keyed()
    theirs = {"Authorization": f"Bearer {key_factory('other')}"}
    bad = [
        schedule_body(cron="*/5 * * * *"),
        schedule_body(timezone="Nowhere/Else"),
        schedule_body(run={**RUN, "profileEnv": {"GITHUB_TOKEN": "ghp_not_real"}}),  # secrets: name a profile
        schedule_body(run={**RUN, "profile": "missing"}),
        schedule_body(run={**RUN, "repoUrl": "https://evil.example/x"}),
        schedule_body(run={**RUN, "agent": "no-such-agent"}),
    ]
    for body in bad:
        response = client.post("/api/kilo/schedules", json=body, headers=mine)
        assert response.status_code == 422, (body, response.text)
    assert client.get("/api/kilo/schedules", headers=mine).json() == {"schedules": []}
    made = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine).json()
    path = f"/api/kilo/schedules/{made['id']}"
    for method, suffix in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")):
        assert client.request(method, path + suffix, headers=theirs).status_code == 404, (method, suffix)
    assert client.get("/api/kilo/schedules", headers=theirs).json() == {"schedules": []}
    assert client.delete(path, headers=mine).status_code == 204


# ------------------------------------------------------------------------------------------------ AWS


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    scheduler = boto3.client("scheduler", endpoint_url=moto_url, region_name="us-east-1")
    scheduler.create_schedule_group(Name="kilo-bridge-runs")
    yield scheduler
    scheduler.delete_schedule_group(Name="kilo-bridge-runs")
    aws.reset_clients()


def test_on_aws_a_schedule_is_an_eventbridge_schedule_that_runs_through_functions_scheduled(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str, Settings]],
    aws_env: Any,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    target = "arn:aws:lambda:us-east-1:123456789012:function:kilo-bridge-scheduled"
    role = "arn:aws:iam::123456789012:role/kilo-bridge-scheduler"
    client, mine, api_key, settings = keyed(
        schedule_group="kilo-bridge-runs", schedule_target_arn=target, schedule_role_arn=role
    )
    made = client.post("/api/kilo/schedules", json=schedule_body(cron="0 3 * * 1-5"), headers=mine)
    assert made.status_code == 201, made.text
    schedule_id = made.json()["id"]
    remote = aws_env.get_schedule(Name=schedule_id, GroupName="kilo-bridge-runs")
    assert remote["ScheduleExpression"] == "cron(0 3 ? * 2-6 *)"
    assert remote["ScheduleExpressionTimezone"] == "Europe/Berlin" and remote["State"] == "ENABLED"
    assert remote["Target"]["Arn"] == target and remote["Target"]["RoleArn"] == role
    # Retried a little, not EventBridge's default 185 times over a day (moto fills that default in as AWS does).
    assert remote["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}
    sent = remote["Target"]["Input"]
    event = json.loads(sent)
    assert event["task"] == "run-agent" and event["schedule"] == schedule_id and event["body"]["agent"] == RUN["agent"]
    assert event["scheduledTime"] == "<aws.scheduler.scheduled-time>"  # Scheduler fills it in on each delivery

    path = f"/api/kilo/schedules/{schedule_id}"
    assert client.post(path + "/pause", headers=mine).status_code == 200
    assert aws_env.get_schedule(Name=schedule_id, GroupName="kilo-bridge-runs")["State"] == "DISABLED"
    assert client.post(path + "/resume", headers=mine).status_code == 200
    assert aws_env.get_schedule(Name=schedule_id, GroupName="kilo-bridge-runs")["State"] == "ENABLED"

    def delivered(at: str) -> dict[str, Any]:  # the input as Scheduler sends it for the firing scheduled at `at`
        event: dict[str, Any] = json.loads(sent.replace("<aws.scheduler.scheduled-time>", at))
        return event

    async def deliver(*events: dict[str, Any]) -> list[dict[str, Any]]:  # what functions/scheduled does with them
        services = Services.build(settings)
        try:
            return [await run_task(services, e) for e in events]
        finally:
            await services.close()

    first, retried, next_night = asyncio.run(
        deliver(delivered("2026-12-03T02:00:00Z"), delivered("2026-12-03T02:00:00Z"), delivered("2026-12-04T02:00:00Z"))
    )
    assert first["task"] == "run-agent" and first["status"] == "queued"
    job = text_hash(redis_client, f"{prefix}job:{first['jobId']}")
    assert job["owner"] == digest(api_key) and job["maxCostUsd"] == "1.5"
    # A retry of the same firing (whenever it arrives) is that firing's run; the next firing is a run of its own.
    assert retried["jobId"] == first["jobId"]
    assert next_night["jobId"] != first["jobId"]
    assert len(job_records(redis_client, prefix)) == 2

    assert client.delete(path, headers=mine).status_code == 204
    with pytest.raises(aws_env.exceptions.ResourceNotFoundException):
        aws_env.get_schedule(Name=schedule_id, GroupName="kilo-bridge-runs")
