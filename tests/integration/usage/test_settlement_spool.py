"""A billed call's settlement survives a Redis outage longer than any retry: Redis (a server of the test's own, with
its append-only file) is killed after the call was admitted and restarted only once the settlement waits in the
spool on disk; it is then written once. A spooled settlement left by a process that stopped is written by the next
one, and a settlement replayed twice counts once."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from kilo_bridge.platform.redis import Store
from kilo_bridge.usage.ledger import Ledger, Outcome
from kilo_bridge.usage.spool import Spool
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import RedisServer

ADMIN = "admin-key-not-real-0123456789"
MSG = [{"role": "user", "content": "x"}]


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own that keeps its data across a kill (AOF, fsynced on every write)."""
    server = RedisServer(tmp_path)
    server.extra = ["--appendonly", "yes", "--appendfsync", "always"]
    server.start()
    yield server
    server.stop()


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def money(r: redis.Redis, key: str) -> tuple[int, int]:
    spend, reserved = r.hmget(f"{{kb}}:apikey:{digest(key)}", "spend_nusd", "reserved_nusd")
    return int(spend or 0), int(reserved or 0)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/kilo/generate-stream"])
def test_a_settlement_survives_redis_killed_for_longer_than_the_retries(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    aof_redis: RedisServer,
    tmp_path: Path,
    path: str,
) -> None:
    spool = Spool(tmp_path / "spool")
    url = serve(
        make_settings(
            redis_url=aof_redis.url,
            redis_prefix="{kb}:",
            redis_timeout_ms=300,
            auth_required=True,
            admin_api_key=ADMIN,
            settlement_spool_dir=str(spool.directory),
        )
    )
    created = httpx.post(
        url + "/api/kilo/admin/keys", json={"name": "ci", "budgetUsd": 1}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    key = created.json()["key"]
    fake.script([{"kind": "ok", "cost": 0.002}])
    body: dict[str, Any] = {"model": "fake/model-a"}
    body |= {"messages": MSG, "stream": True} if path.startswith("/v1") else {"prompt": "x"}
    with httpx.stream("POST", url + path, json=body, headers={"x-api-key": key}, timeout=10) as resp:
        assert resp.status_code == 200  # admitted
        aof_redis.stop()  # killed: every try of the settlement now meets a refused connection
        resp.read()
    assert wait_for(lambda: len(spool) == 1), "the settlement Redis refused is not in the spool"
    time.sleep(4)  # the outage goes on past the old retries (5 tries in ~3 s)
    aof_redis.start()  # same port, same data directory
    r = redis.Redis.from_url(aof_redis.url)
    assert wait_for(lambda: money(r, key) == (2_000_000, 0)), money(r, key)
    assert wait_for(lambda: len(spool) == 0)
    assert int(r.hget("{kb}:stats", "ok") or 0) == 1
    assert int(r.hget("{kb}:stats", "spend_nusd") or 0) == 2_000_000
    r.close()


async def test_the_next_process_replays_what_a_stopped_one_left_and_repeats_count_once(
    aof_redis: RedisServer, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(redis_url=aof_redis.url, redis_prefix="{kb}:", redis_timeout_ms=300)
    spool_dir = tmp_path / "spool"
    r = redis.Redis.from_url(aof_redis.url)
    key_digest = "e" * 64
    r.hset(
        f"{{kb}}:apikey:{key_digest}",
        mapping={"revoked": 0, "budget_nusd": 10_000, "spend_nusd": 0, "reserved_nusd": 0, "rpm": 0, "tpm": 0},
    )
    first = Ledger(Store(settings), spool_dir=spool_dir)
    admission = await first.admit(key_digest, 5_000)
    aof_redis.stop()
    assert not await first.settle(Outcome(model="m", ok=True, prompt_tokens=3), 1_234, admission)
    await first.close(drain_s=0.5)  # Redis still down: the entry stays for the next process
    await first.store.close()
    (entry,) = Spool(spool_dir).paths()
    shutil.copy(entry, spool_dir / ("9" + entry.name))  # the same settlement twice (a replay whose reply was lost)

    aof_redis.start()
    second = Ledger(Store(settings), spool_dir=spool_dir)
    assert await second.replay() == 2
    assert not Spool(spool_dir).paths()
    record = r.hgetall(f"{{kb}}:apikey:{key_digest}")
    assert (int(record[b"spend_nusd"]), int(record[b"reserved_nusd"])) == (1_234, 0)
    assert int(r.hget("{kb}:stats", "ok") or 0) == 1
    assert int(r.hget("{kb}:stats", "prompt_tokens") or 0) == 3
    await second.close()
    await second.store.close()
    r.close()
