"""Revoking a key revokes what it left running: its trigger's signed call is refused and starts nothing, its
schedules stop firing (the local bullmq job scheduler removed; on AWS, the EventBridge schedule disabled) and a
firing already in flight starts nothing; the admin can list and delete any key's triggers, schedules and
profiles, which the revoked key's owner can no longer reach."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest, key_id
from kilo_bridge.scheduled_tasks import run_task
from kilo_bridge.services import Services
from tests.integration.schedules.test_schedules import aws_env, is_scheduled, job_records, schedule_body  # noqa: F401
from tests.integration.triggers.test_triggers import ALERT, call, new_trigger, signed
from tests.support import ROOT

ADMIN = {"X-API-Key": "admin-key-not-real-0123456789"}


def _setup(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    **overrides: Any,
) -> tuple[TestClient, dict[str, str], str, Settings]:
    secret = key_factory("ci")
    settings = make_settings(auth_required=True, admin_api_key=ADMIN["X-API-Key"], **overrides)
    return make_app_client(settings), {"Authorization": f"Bearer {secret}"}, key_id(digest(secret)), settings


def test_a_revoked_keys_trigger_and_schedule_start_nothing_and_the_admin_deletes_them(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    client, mine, kid, settings = _setup(make_app_client, make_settings, key_factory)
    trigger = new_trigger(client, mine)
    schedule = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine).json()
    made = client.post(
        "/api/kilo/profiles", json={"name": "deploy", "env": {"DEPLOY_TOKEN": "sk-test-x"}}, headers=mine
    )
    assert made.status_code == 201, made.text
    assert is_scheduled(settings, schedule["id"])

    assert client.delete(f"/api/kilo/admin/keys/{kid}", headers=ADMIN).status_code == 200
    # the trigger's signed call: refused, nothing started, the refusal on the trigger's record
    body = orjson.dumps(ALERT)
    refused = call(client, trigger, body, signed(trigger["secret"], body))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_revoked", refused.text
    assert job_records(redis_client, prefix) == []
    # the schedule: off the local queue at once, shown paused, and a firing in flight starts nothing
    assert not is_scheduled(settings, schedule["id"])

    async def fire() -> Any:
        services = Services.build(settings)
        try:
            return await services.schedules.fire(schedule["id"], "20270101T0300")
        finally:
            await services.close()

    assert asyncio.run(fire()) is None and job_records(redis_client, prefix) == []
    # the owner is locked out; the admin sees everything the key left and deletes it
    assert client.get("/api/kilo/triggers", headers=mine).status_code == 401
    held = client.get(f"/api/kilo/admin/keys/{kid}/holdings", headers=ADMIN)
    assert held.status_code == 200, held.text
    shown = held.json()
    assert [t["id"] for t in shown["triggers"]] == [trigger["id"]]
    assert [(s["id"], s["state"]) for s in shown["schedules"]] == [(schedule["id"], "paused")]
    assert [(p["name"], p["variables"]) for p in shown["profiles"]] == [("deploy", ["DEPLOY_TOKEN"])]
    assert "sk-test-x" not in held.text
    base = f"/api/kilo/admin/keys/{kid}"
    for path in (f"/triggers/{trigger['id']}", f"/schedules/{schedule['id']}", "/profiles/deploy"):
        assert client.delete(base + path, headers=mine).status_code == 401  # admin only
        assert client.delete(base + path, headers=ADMIN).status_code == 204, path
        assert client.delete(base + path, headers=ADMIN).status_code == 404, path
    assert client.get(base + "/holdings", headers=ADMIN).json() == {"triggers": [], "schedules": [], "profiles": []}
    assert client.get("/api/kilo/admin/keys/000000000000/holdings", headers=ADMIN).status_code == 404


def test_on_aws_revoking_a_key_disables_its_eventbridge_schedule(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    aws_env: Any,  # noqa: F811
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    group = "kilo-bridge-runs"
    client, mine, kid, settings = _setup(
        make_app_client,
        make_settings,
        key_factory,
        schedule_group=group,
        schedule_target_arn="arn:aws:lambda:us-east-1:123456789012:function:kilo-bridge-scheduled",
        schedule_role_arn="arn:aws:iam::123456789012:role/kilo-bridge-scheduler",
    )
    schedule_id = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine).json()["id"]
    remote = aws_env.get_schedule(Name=schedule_id, GroupName=group)
    assert remote["State"] == "ENABLED"
    assert client.delete(f"/api/kilo/admin/keys/{kid}", headers=ADMIN).status_code == 200
    assert aws_env.get_schedule(Name=schedule_id, GroupName=group)["State"] == "DISABLED"
    # a firing EventBridge had already sent: functions/scheduled starts no run for it
    event = json.loads(remote["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", "2027-01-01T02:00:00Z"))

    async def deliver() -> dict[str, Any]:
        services = Services.build(settings)
        try:
            return await run_task(services, event)
        finally:
            await services.close()

    asyncio.run(deliver())
    assert job_records(redis_client, prefix) == []
    assert client.delete(f"/api/kilo/admin/keys/{kid}/schedules/{schedule_id}", headers=ADMIN).status_code == 204


def test_keys_revoke_on_the_command_line_disables_the_keys_schedules_too(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    prefix: str,
    tmp_path: Path,
) -> None:
    client, mine, kid, settings = _setup(make_app_client, make_settings, key_factory)
    schedule = client.post("/api/kilo/schedules", json=schedule_body(), headers=mine).json()
    assert is_scheduled(settings, schedule["id"])
    env = {**os.environ, "REDIS_URL": settings.resolved_redis_url, "REDIS_PREFIX": prefix}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "keys", "revoke", kid],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout[done.stdout.index("{\n") :]  # the key, after the service's own log lines
    assert json.loads(printed)["revoked"] is True
    assert not is_scheduled(settings, schedule["id"])
    held = client.get(f"/api/kilo/admin/keys/{kid}/holdings", headers=ADMIN).json()
    assert [s["state"] for s in held["schedules"]] == ["paused"]
