"""Webhook triggers through the API, in process on real Redis: a signed call starts the owner's run with the
rendered prompt; a bad, stale, replayed, oversized or over-limit call is refused with nothing started; the
secret is shown once and sealed at rest; another key's trigger is absent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest, key_id
from kilo_bridge.triggers.service import signature
from tests.integration.profiles.test_profiles import everything_in_redis
from tests.support import text_hash

REPO = "https://github.com/acme/widgets"
TEMPLATE = "Fix {{ body.alert.title }} on {{ body.service }}{{ body.missing.field }} (tag {{ body.tags.0 }})"
ALERT = {"alert": {"title": "disk full"}, "service": "db-1", "tags": ["prod"]}


def new_trigger(client: TestClient | httpx.Client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "alerts", "agent": "apply-patch-and-pr", "repoUrl": REPO, "promptTemplate": TEMPLATE}
    body.update(fields)
    created = client.post("/api/kilo/triggers", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


def signed(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-Kilo-Timestamp": stamp, "X-Kilo-Signature": signature(secret, stamp, body)}


def call(client: TestClient, trigger: dict[str, Any], body: bytes, headers: dict[str, str]) -> Any:
    path = trigger["url"].removeprefix("http://127.0.0.1")
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def jobs_of(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    return list(client.get("/api/kilo/jobs", headers=headers).json()["jobs"])


@pytest.fixture
def keyed(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings], key_factory: Callable[..., str]
) -> Callable[..., tuple[TestClient, dict[str, str], str]]:
    def build(**overrides: Any) -> tuple[TestClient, dict[str, str], str]:
        secret = key_factory("ci", max_jobs=overrides.pop("max_jobs", None))
        client = make_app_client(make_settings(auth_required=True, **overrides))
        return client, {"Authorization": f"Bearer {secret}"}, secret

    return build


def test_a_signed_call_starts_the_owners_job_with_the_rendered_prompt(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str]], redis_client: redis.Redis, prefix: str
) -> None:
    client, mine, api_key = keyed()
    trigger = new_trigger(client, mine, maxCostUsd=2.5)
    assert trigger["id"].startswith("trg_") and trigger["url"].endswith(f"/api/kilo/triggers/{trigger['id']}")
    body = orjson.dumps(ALERT)
    started = call(client, trigger, body, signed(trigger["secret"], body))
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    assert started.headers["location"] == started.json()["statusUrl"]
    job = text_hash(redis_client, f"{prefix}job:{job_id}")
    assert job["prompt"] == "Fix disk full on db-1 (tag prod)"
    assert job["agent"] == "apply-patch-and-pr" and job["repoUrl"] == REPO
    assert job["status"] == "queued"
    # the run is the trigger owner's: its key's job, with the trigger's cost cap
    shown = client.get(f"/api/kilo/job/{job_id}", headers=mine).json()
    assert shown["keyId"] == key_id(digest(api_key)) and shown["maxCostUsd"] == 2.5
    deliveries = client.get(f"/api/kilo/triggers/{trigger['id']}/deliveries", headers=mine).json()["deliveries"]
    assert [(d["outcome"], d["jobId"], d["jobStatus"]) for d in deliveries] == [("started", job_id, "queued")]
    assert deliveries[0]["jobUrl"].endswith(f"/api/kilo/job/{job_id}")


def test_a_dry_run_trigger_starts_dry_runs(keyed: Callable[..., tuple[TestClient, dict[str, str], str]]) -> None:
    client, mine, _ = keyed()
    trigger = new_trigger(client, mine, dryRun=True)
    assert trigger["dryRun"] is True
    listed = client.get("/api/kilo/triggers", headers=mine).json()["triggers"]
    assert [t["dryRun"] for t in listed] == [True]
    body = orjson.dumps(ALERT)
    started = call(client, trigger, body, signed(trigger["secret"], body))
    assert started.status_code == 202, started.text
    assert client.get(f"/api/kilo/job/{started.json()['jobId']}", headers=mine).json()["dryRun"] is True
    plain = new_trigger(client, mine, name="plain")
    assert plain["dryRun"] is False


def test_refused_calls_start_nothing(keyed: Callable[..., tuple[TestClient, dict[str, str], str]]) -> None:
    client, mine, _ = keyed(trigger_max_body_bytes=2048)
    trigger = new_trigger(client, mine)
    secret, body = trigger["secret"], orjson.dumps(ALERT)
    now = int(time.time())
    refused = {
        "wrong secret": call(client, trigger, body, signed("kbt_not-the-secret", body)),
        "another body": call(client, trigger, body + b" ", signed(secret, body)),
        "no signature": call(client, trigger, body, {"X-Kilo-Timestamp": str(now)}),
        "no timestamp": call(client, trigger, body, {"X-Kilo-Signature": signed(secret, body)["X-Kilo-Signature"]}),
        "stale": call(client, trigger, body, signed(secret, body, now - 301)),
        "from the future": call(client, trigger, body, signed(secret, body, now + 301)),
        "not a number": call(client, trigger, body, {**signed(secret, body), "X-Kilo-Timestamp": "soon"}),
    }
    for why, response in refused.items():
        assert response.status_code == 401, (why, response.text)
        assert response.json()["error"]["code"] == "unauthorized", why
    big = orjson.dumps({"pad": "x" * 3000})
    too_big = call(client, trigger, big, signed(secret, big))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    unknown = "trg_" + "A" * 32
    assert client.post(f"/api/kilo/triggers/{unknown}", content=body, headers=signed(secret, body)).status_code == 404
    assert client.post("/api/kilo/triggers/not-an-id", content=body, headers=signed(secret, body)).status_code == 404
    assert jobs_of(client, mine) == []
    assert client.get(f"/api/kilo/triggers/{trigger['id']}/deliveries", headers=mine).json() == {"deliveries": []}
    # one good call, then the same signed call again: a replay, refused
    headers = signed(secret, body)
    assert call(client, trigger, body, headers).status_code == 202
    replay = call(client, trigger, body, headers)
    assert replay.status_code == 409, replay.text
    assert len(jobs_of(client, mine)) == 1


def test_the_per_trigger_rate_limit_and_the_owners_max_jobs_apply(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str]],
) -> None:
    client, mine, _ = keyed(trigger_rate_per_minute=3, max_jobs=2)
    trigger = new_trigger(client, mine)
    if time.time() % 60 > 50:  # the window is the clock's minute: start the calls well inside one
        time.sleep(61 - time.time() % 60)
    codes = []
    for n in range(4):
        body = orjson.dumps({**ALERT, "n": n})
        response = call(client, trigger, body, signed(trigger["secret"], body))
        codes.append((response.status_code, response.json().get("error", {}).get("code")))
        if response.status_code == 429 and codes[-1][1] == "rate_limited":
            assert int(response.headers["retry-after"]) >= 1
    # two jobs (maxJobs), the third refused by the key's maxJobs, the fourth by the trigger's limit
    assert codes == [(202, None), (202, None), (429, "too_many_jobs"), (429, "rate_limited")]
    assert len(jobs_of(client, mine)) == 2
    deliveries = client.get(f"/api/kilo/triggers/{trigger['id']}/deliveries", headers=mine).json()["deliveries"]
    assert [(d["outcome"], d["code"]) for d in deliveries] == [
        ("refused", "rate_limited"),
        ("refused", "too_many_jobs"),
        ("started", None),
        ("started", None),
    ]


def test_the_secret_is_shown_once_and_sealed_at_rest(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str]],
    redis_client: redis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, mine, _ = keyed()
    trigger = new_trigger(client, mine)
    secret = trigger["secret"]
    assert secret.startswith("kbt_") and len(secret) > 40
    body = orjson.dumps(ALERT)
    assert call(client, trigger, body, signed(secret, body)).status_code == 202
    later = [
        client.get("/api/kilo/triggers", headers=mine),
        client.get(f"/api/kilo/triggers/{trigger['id']}", headers=mine),
        client.get(f"/api/kilo/triggers/{trigger['id']}/deliveries", headers=mine),
    ]
    assert [t["id"] for t in later[0].json()["triggers"]] == [trigger["id"]]
    assert later[1].json()["promptTemplate"] == TEMPLATE and "secret" not in later[1].json()
    for response in later:
        assert response.status_code == 200 and secret not in response.text
    stored = everything_in_redis(redis_client, prefix)
    assert "v1.local." in stored and secret not in stored
    assert not any(secret in str(vars(record)) for record in caplog.records)
    assert client.delete(f"/api/kilo/triggers/{trigger['id']}", headers=mine).status_code == 204
    assert client.get(f"/api/kilo/triggers/{trigger['id']}", headers=mine).status_code == 404
    assert call(client, trigger, body, signed(secret, body)).status_code == 404  # its URL is dead
    assert not list(redis_client.scan_iter(match=prefix + "trigger:*" + trigger["id"][4:]))


def test_a_rotated_secret_is_shown_once_and_the_old_one_verifies_nothing(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str]],
    redis_client: redis.Redis,
    prefix: str,
    key_factory: Callable[..., str],
) -> None:
    client, mine, _ = keyed()
    trigger = new_trigger(client, mine)
    path = f"/api/kilo/triggers/{trigger['id']}"
    rotated = client.post(path + "/rotate", headers=mine)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["url"] == trigger["url"] and new["secret"].startswith("kbt_") and new["secret"] != trigger["secret"]
    body = orjson.dumps(ALERT)
    old_call = call(client, trigger, body, signed(trigger["secret"], body))
    assert old_call.status_code == 401 and jobs_of(client, mine) == []
    assert call(client, trigger, body, signed(new["secret"], body)).status_code == 202
    assert "secret" not in client.get(path, headers=mine).json()
    stored = everything_in_redis(redis_client, prefix)
    assert new["secret"] not in stored and trigger["secret"] not in stored
    theirs = {"Authorization": f"Bearer {key_factory('b')}"}
    assert client.post(path + "/rotate", headers=theirs).status_code == 404  # another key's: absent
    assert client.delete(path, headers=mine).status_code == 204
    assert client.post(path + "/rotate", headers=mine).status_code == 404


def test_another_keys_trigger_is_absent(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings], key_factory: Callable[..., str]
) -> None:
    client = make_app_client(make_settings(auth_required=True))
    mine = {"Authorization": f"Bearer {key_factory('a')}"}
    theirs = {"Authorization": f"Bearer {key_factory('b')}"}
    trigger = new_trigger(client, mine)
    path = f"/api/kilo/triggers/{trigger['id']}"
    assert client.get(path, headers=theirs).status_code == 404
    assert client.get(path + "/deliveries", headers=theirs).status_code == 404
    assert client.delete(path, headers=theirs).status_code == 404
    assert client.get("/api/kilo/triggers", headers=theirs).json() == {"triggers": []}
    assert client.get(path, headers=mine).status_code == 200
    assert client.get("/api/kilo/triggers").status_code == 401  # managing triggers needs a key


def test_a_trigger_is_refused_at_creation_when_its_run_could_never_start(
    keyed: Callable[..., tuple[TestClient, dict[str, str], str]],
) -> None:
    client, mine, _ = keyed()
    base = {"name": "x", "agent": "apply-patch-and-pr", "repoUrl": REPO, "promptTemplate": "do {{ body.x }}"}
    bad = [
        ({"agent": "no-such-agent"}, None),
        ({"repoUrl": "https://evil.example/acme/widgets"}, "repoUrl"),
        ({"promptTemplate": "{{ body.x | safe }}"}, "promptTemplate"),
        ({"profile": "missing"}, "profile"),
    ]
    for change, field in bad:
        response = client.post("/api/kilo/triggers", json={**base, **change}, headers=mine)
        assert response.status_code == 422, (change, response.text)
        if field:
            assert response.json()["error"]["details"][0]["field"] == field, change
    assert client.get("/api/kilo/triggers", headers=mine).json() == {"triggers": []}
