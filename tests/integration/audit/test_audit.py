"""The audit log on real Redis, in process: every administrative change (keys, profiles, triggers, schedules,
admin logins, `kilo-bridge keys`) is one append-only record of who, what, when and from where; none holds a
secret; the admin reads it filtered and page by page; records older than the retention are gone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest, key_id
from tests.integration.profiles.test_profiles import everything_in_redis
from tests.support import REDIS_URL, ROOT, text

ADMIN = "admin-key-not-real-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
PROFILE_VALUE = "ghp_profile-value-not-real-4d1c"
RUN = {"repoUrl": "https://github.com/acme/widgets", "agent": "dependency-update", "prompt": "Update", "maxCostUsd": 1}


def read_all(client: TestClient, **query: str) -> list[dict[str, Any]]:
    """Every page, following nextCursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/kilo/admin/audit", params=params, headers=AS_ADMIN)
        assert page.status_code == 200, page.text
        out += page.json()["records"]
        cursor = page.json()["nextCursor"]
        if not cursor:
            return out


def test_every_administrative_change_is_one_record_and_none_holds_a_secret(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    client = make_app_client(make_settings(auth_required=True, admin_api_key=ADMIN))
    assert client.post("/api/kilo/admin/login", headers={"Authorization": "Bearer wrong-admin-key"}).status_code == 401
    assert client.post("/api/kilo/admin/login", headers=AS_ADMIN).status_code == 204

    created = client.post(
        "/api/kilo/admin/keys", json={"name": "ci", "budgetUsd": 5, "models": ["fake/*"]}, headers=AS_ADMIN
    )
    key = created.json()
    kid = key["id"]
    mine = {"Authorization": f"Bearer {key['key']}"}
    assert (
        client.patch(f"/api/kilo/admin/keys/{kid}", json={"budgetPeriod": "day"}, headers=AS_ADMIN).status_code == 200
    )

    assert (
        client.post(
            "/api/kilo/profiles", json={"name": "ci", "env": {"GITHUB_TOKEN": PROFILE_VALUE}}, headers=mine
        ).status_code
        == 201
    )
    assert (
        client.put(
            "/api/kilo/profiles/ci", json={"env": {"GITHUB_TOKEN": PROFILE_VALUE + "-2"}}, headers=mine
        ).status_code
        == 200
    )
    assert client.delete("/api/kilo/profiles/ci", headers=mine).status_code == 204

    trigger = client.post(
        "/api/kilo/triggers",
        json={"name": "alerts", "agent": "apply-patch-and-pr", "repoUrl": RUN["repoUrl"], "promptTemplate": "Fix it"},
        headers=mine,
    ).json()
    rotated = client.post(f"/api/kilo/triggers/{trigger['id']}/rotate", headers=mine).json()
    assert client.delete(f"/api/kilo/triggers/{trigger['id']}", headers=mine).status_code == 204

    schedule = client.post(
        "/api/kilo/schedules", json={"name": "nightly", "cron": "0 3 * * *", "run": RUN}, headers=mine
    ).json()
    sid = schedule["id"]
    for step in ("pause", "resume"):
        assert client.post(f"/api/kilo/schedules/{sid}/{step}", headers=mine).status_code == 200
    assert client.delete(f"/api/kilo/schedules/{sid}", headers=mine).status_code == 204
    assert client.delete(f"/api/kilo/admin/keys/{kid}", headers=AS_ADMIN).status_code == 200
    # Refused changes are not changes: nothing is recorded for them.
    assert client.delete("/api/kilo/admin/keys/000000000000", headers=AS_ADMIN).status_code == 404
    assert client.post("/api/kilo/admin/keys", json={"name": "bad name"}, headers=AS_ADMIN).status_code == 422

    records = read_all(client)
    assert [(r["actor"], r["action"], r["target"], r["outcome"]) for r in reversed(records)] == [
        ("open", "admin.login", "", "refused"),
        ("admin", "admin.login", "", "ok"),
        ("admin", "key.create", kid, "ok"),
        ("admin", "key.update", kid, "ok"),
        (f"key:{kid}", "profile.create", "ci", "ok"),
        (f"key:{kid}", "profile.rotate", "ci", "ok"),
        (f"key:{kid}", "profile.delete", "ci", "ok"),
        (f"key:{kid}", "trigger.create", trigger["id"], "ok"),
        (f"key:{kid}", "trigger.rotate", trigger["id"], "ok"),
        (f"key:{kid}", "trigger.delete", trigger["id"], "ok"),
        (f"key:{kid}", "schedule.create", sid, "ok"),
        (f"key:{kid}", "schedule.pause", sid, "ok"),
        (f"key:{kid}", "schedule.resume", sid, "ok"),
        (f"key:{kid}", "schedule.delete", sid, "ok"),
        ("admin", "key.revoke", kid, "ok"),
    ]
    by_action = {r["action"]: r for r in records}
    assert by_action["key.create"]["fields"] == ["budget_usd", "models", "name"]
    assert by_action["profile.create"]["fields"] == ["env", "name"]
    assert all(r["ip"] == "testclient" and r["at"].endswith("Z") and r["requestId"] for r in records)

    # Never a secret: not in the stream as stored, not in what the API answers.
    stored = everything_in_redis(redis_client, prefix)
    answered = str(records)
    for secret in (ADMIN, "wrong-admin-key", key["key"], PROFILE_VALUE, trigger["secret"], rotated["secret"]):
        assert secret not in stored and secret not in answered

    # Filters and pages.
    assert [r["action"] for r in read_all(client, action="key.")] == ["key.revoke", "key.update", "key.create"]
    assert {r["actor"] for r in read_all(client, actor="admin")} == {"admin"}
    assert len(read_all(client, target=sid)) == 4
    assert [r["id"] for r in read_all(client, limit="2")] == [r["id"] for r in records]
    first = client.get("/api/kilo/admin/audit", params={"limit": "3"}, headers=AS_ADMIN).json()
    assert len(first["records"]) == 3 and first["nextCursor"] == first["records"][-1]["id"]
    assert client.get("/api/kilo/admin/audit", headers=mine).status_code == 401
    assert client.get("/api/kilo/admin/audit", params={"limit": "0"}, headers=AS_ADMIN).status_code == 422
    assert client.get("/api/kilo/admin/audit", params={"cursor": "x;y"}, headers=AS_ADMIN).status_code == 422
    # The stream is appended to, never rewritten: its entries are exactly the records (the oldest first).
    assert redis_client.xlen(f"{prefix}audit") == len(records)


def test_every_time_and_cursor_the_document_allows_is_answered(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]
) -> None:
    """`since`/`until` are RFC 3339 date-times (lower-case `t`/`z`, before 1970); a cursor is any stream id."""
    client = make_app_client(make_settings(auth_required=True, admin_api_key=ADMIN))
    assert client.post("/api/kilo/admin/login", headers=AS_ADMIN).status_code == 204

    def page(**query: str) -> dict[str, Any]:
        resp = client.get("/api/kilo/admin/audit", params=query, headers=AS_ADMIN)
        assert resp.status_code == 200, (query, resp.text)
        return resp.json()  # type: ignore[no-any-return]

    assert [r["action"] for r in page(since="1969-12-31t23:59:59z")["records"]] == ["admin.login"]
    assert page(until="1960-01-01T00:00:00+01:00") == {"records": [], "nextCursor": None}
    assert page(since="0001-01-01T00:00:00Z", until="0001-01-01T00:00:00-23:59")["records"] == []
    assert page(cursor="0-0") == {"records": [], "nextCursor": None}
    assert page(cursor="9999999999999999999-9999999999999999999")["records"][0]["action"] == "admin.login"


def test_records_older_than_the_retention_are_gone(
    make_app_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    client = make_app_client(make_settings(auth_required=True, admin_api_key=ADMIN, audit_retention_days=2))
    now = [1_800_000_000.0]
    client.app.state.services.ledger.clock = lambda: now[0]  # type: ignore[attr-defined]
    client.post("/api/kilo/admin/keys", json={"name": "old"}, headers=AS_ADMIN)
    now[0] += 86_400
    client.post("/api/kilo/admin/keys", json={"name": "newer"}, headers=AS_ADMIN)
    assert len(read_all(client)) == 2
    now[0] += 1.5 * 86_400  # the first is 2.5 days old now
    assert len(read_all(client)) == 1
    client.post("/api/kilo/admin/keys", json={"name": "newest"}, headers=AS_ADMIN)
    assert len(read_all(client)) == 2
    assert redis_client.xlen(f"{prefix}audit") <= 3  # trimmed on append (MINID ~ may keep a little)


def test_keys_made_with_the_command_line_are_recorded(
    store_settings: Settings, redis_client: redis.Redis, prefix: str
) -> None:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    made = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "keys", "create", "--name", "cli-made", "--budget-usd", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    entries = redis_client.xrange(f"{prefix}audit") or []
    assert len(entries) == 1
    _, entry = entries[0]
    assert entry is not None
    fields = {text(k): text(v) for k, v in entry.items()}
    secret = next(w for w in made.stdout.replace('"', " ").split() if w.startswith("kb_"))
    assert (fields["actor"], fields["action"], fields["target"]) == ("cli", "key.create", key_id(digest(secret)))
    assert secret not in str(entries)
