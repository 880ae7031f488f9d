"""A stream's billed usage is counted when nobody is left to read it: a client that hangs up mid-stream, and a
10 MB line refused mid-stream. The server reads on to the upstream's final usage chunk (bounded by STREAM_DRAIN_S),
so the key's spend, the stats and the credits all carry the upstream's cost, to the nano-dollar."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread

ADMIN = "admin-key-not-real-0123456789"
MSG = [{"role": "user", "content": "x"}]
COST_NUSD = 2_345_678


def counted(r: redis.Redis, prefix: str, key: str) -> tuple[int, int, int, int]:
    """(the key's spend, its reservations, the stats' spend, the credits' spend since the last balance)."""
    spend, reserved = r.hmget(f"{prefix}apikey:{digest(key)}", "spend_nusd", "reserved_nusd")
    stats = r.hget(f"{prefix}stats", "spend_nusd")
    credits = r.hget(f"{prefix}credits", "spent_since_nusd")
    return int(spend or 0), int(reserved or 0), int(stats or 0), int(credits or 0)


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def keyed(serve: Callable[..., str], make_settings: Callable[..., Settings]) -> tuple[str, str]:
    url = serve(make_settings(auth_required=True, admin_api_key=ADMIN, stream_drain_s=20))
    resp = httpx.post(
        url + "/api/kilo/admin/keys", json={"name": "ci", "budgetUsd": 5}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    return url, str(resp.json()["key"])


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/kilo/generate-stream"])
def test_a_stream_the_client_hangs_up_on_is_charged_its_real_cost(
    keyed: tuple[str, str], fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str, path: str
) -> None:
    url, key = keyed
    fake.script([{"kind": "ok", "chunks": 6, "chunk_delay_ms": 150, "cost": COST_NUSD / 1e9}])
    body = {"model": "fake/model-a", "messages": MSG, "stream": True} if path.startswith("/v1") else {"prompt": "x"}
    with httpx.stream("POST", url + path, json=body, headers={"x-api-key": key}, timeout=10) as resp:
        assert resp.status_code == 200
        next(resp.iter_raw())  # the first event; then the client hangs up
    assert wait_for(lambda: counted(redis_client, prefix, key)[1] == 0)
    assert counted(redis_client, prefix, key) == (COST_NUSD, 0, COST_NUSD, COST_NUSD)
    assert fake.disconnects == 0  # the upstream was read to its end, not dropped


def test_a_10_mb_line_is_refused_and_the_usage_after_it_still_counted(
    keyed: tuple[str, str], fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    url, key = keyed
    fake.script([{"kind": "huge_line", "after": 1, "size": 10_000_000, "cost": COST_NUSD / 1e9}])
    body = {"model": "fake/model-a", "messages": MSG, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    assert '"code":"upstream_malformed"' in text.replace(" ", "")  # refused cleanly, as an error event
    assert "x" * 1000 not in text  # nothing of the line reached the client
    assert wait_for(lambda: counted(redis_client, prefix, key)[1] == 0)
    assert counted(redis_client, prefix, key) == (COST_NUSD, 0, COST_NUSD, COST_NUSD)
    assert int(redis_client.hget(f"{prefix}stats", "failed") or 0) == 1
