"""One failed price-list fetch costs nothing: the list is fetched again in the background (soon, then less
often), and a call that came while it was missing is charged from its usage once the list is back, not the
fallback estimate. The fake gateway's `GET /models` fails (HTTP 500) until the test restores it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread

ADMIN = "admin-key-not-real-0123456789"
PROMPT_NUSD, COMPLETION_NUSD = 1_000, 2_000  # fake/model-a: $0.000001 and $0.000002 a token


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_call_made_while_the_price_list_failed_is_charged_from_its_usage(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    fake.models_status = 500
    url = serve(make_settings(auth_required=True, admin_api_key=ADMIN))
    created = httpx.post(
        url + "/api/kilo/admin/keys", json={"name": "ci", "budgetUsd": 5}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    key = created.json()["key"]
    fake.script([{"kind": "ok", "chunks": 3}])  # usage without `cost`: priced from tokens and the list
    body = {"model": "fake/model-a", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp:
        assert resp.status_code == 200
        resp.read()
    assert fake.calls("/models")  # the list was asked for, and failed
    fake.models_status = None  # the gateway's list is back: the background retry finds it
    record = f"{prefix}apikey:{digest(key)}"
    assert wait_for(lambda: int(redis_client.hget(record, "reserved_nusd") or 0) == 0)
    stats = redis_client.hgetall(f"{prefix}stats")
    expected = int(stats[b"prompt_tokens"]) * PROMPT_NUSD + int(stats[b"completion_tokens"]) * COMPLETION_NUSD
    assert expected > 0
    assert int(redis_client.hget(record, "spend_nusd") or 0) == expected  # not the $0.05 fallback
    assert int(stats[b"spend_nusd"]) == expected
    assert int(stats.get(b"unpriced", 0)) == 0
