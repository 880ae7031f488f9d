"""Money stays exact when bodies are hostile and Redis misbehaves: nothing is reserved for an invalid body,
every reservation is released even if its settlement never comes, admission and settlement count once
however often they are sent, and a Redis paused (SIGSTOP of a server of the test's own) during admission
or during the settlement leaves the key's spend and reservations exact."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from kilo_bridge.platform.redis import Store
from kilo_bridge.usage.ledger import Ledger, Outcome
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import number

ADMIN = "admin-key-not-real-0123456789"
MSG = [{"role": "user", "content": "x"}]


def new_key(url: str, budget_usd: float = 1.0) -> str:
    resp = httpx.post(
        url + "/api/kilo/admin/keys",
        json={"name": "ci", "budgetUsd": budget_usd},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def money(r: redis.Redis, prefix: str, key: str) -> tuple[int, int]:
    spend, reserved = r.hmget(f"{prefix}apikey:{digest(key)}", "spend_nusd", "reserved_nusd")
    return int(spend or 0), int(reserved or 0)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": MSG, "max_tokens": -5}),
        ("/v1/chat/completions", {"messages": MSG, "max_tokens": 0}),
        ("/v1/chat/completions", {"messages": MSG, "max_tokens": 1.5}),
        ("/v1/chat/completions", {"messages": MSG, "max_tokens": "100"}),
        ("/v1/chat/completions", {"messages": MSG, "max_completion_tokens": -1}),
        ("/v1/responses", {"input": "x", "max_output_tokens": -1}),
        ("/v1/messages", {"messages": MSG, "max_tokens": 0}),
        ("/v1/messages", {"messages": MSG, "max_tokens": 2.5}),
        ("/api/kilo/generate", {"prompt": "x", "maxTokens": -1}),
        ("/api/kilo/generate", {"prompt": "x", "maxTokens": 1.5}),
    ],
)
def test_bad_token_caps_are_422_before_anything_is_reserved(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
    path: str,
    body: dict[str, Any],
) -> None:
    url = serve(make_settings(auth_required=True, admin_api_key=ADMIN))
    key = new_key(url, 0.01)
    resp = httpx.post(url + path, json=body, headers={"x-api-key": key})
    assert resp.status_code == 422, resp.text
    assert money(redis_client, prefix, key) == (0, 0)
    assert int(redis_client.hget(f"{prefix}apikey:{digest(key)}", "requests") or 0) == 0
    assert not fake.requests


@pytest.fixture
def ledger(redis_client: redis.Redis, prefix: str, make_settings: Callable[..., Settings]) -> Iterator[Ledger]:
    store = Store(make_settings())
    # A hold long enough that the refusal below is never late on a busy machine; the release is waited for.
    yield Ledger(store, hold_s=2.0)


async def test_a_reservation_whose_settlement_never_comes_is_released(
    ledger: Ledger, redis_client: redis.Redis, prefix: str
) -> None:
    key_digest = "d" * 64
    redis_client.hset(
        f"{prefix}apikey:{key_digest}",
        mapping={"revoked": 0, "budget_nusd": 1_000, "spend_nusd": 0, "reserved_nusd": 0, "rpm": 0, "tpm": 0},
    )
    lost = await ledger.admit(key_digest, 800)  # its settlement never comes (a crash, a lost reply)
    with pytest.raises(Exception, match="budget"):
        await ledger.admit(key_digest, 800)
    second = await _admitted_once_released(ledger, key_digest, 800)  # the lost one was released after its hold
    await ledger.record(Outcome(model="m", ok=True), 300, second)
    record = redis_client.hgetall(f"{prefix}apikey:{key_digest}")
    assert (int(record[b"spend_nusd"]), int(record[b"reserved_nusd"])) == (300, 0)
    # The lost one's settlement turns up after all: it is charged, and nothing is released twice.
    await ledger.record(Outcome(model="m", ok=True), 100, lost)
    await ledger.record(Outcome(model="m", ok=True), 100, lost)  # ... twice: counted once
    record = redis_client.hgetall(f"{prefix}apikey:{key_digest}")
    assert (int(record[b"spend_nusd"]), int(record[b"reserved_nusd"])) == (400, 0)
    assert number(redis_client.hget(f"{prefix}stats", "ok")) == 2
    await ledger.store.close()


async def _admitted_once_released(ledger: Ledger, key_digest: str, nusd: int) -> Any:
    """Admitted as soon as the reservation holding the budget is released (bounded wait, not a guessed sleep)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await ledger.admit(key_digest, nusd)
        except Exception as exc:
            assert "budget" in str(exc).lower(), exc
            assert time.monotonic() < deadline, "the lost reservation was never released"
            await asyncio.sleep(0.05)


class Paused:
    """SIGSTOP a redis-server for `seconds` from another thread, after `after` seconds."""

    def __init__(self, pid: int, after: float, seconds: float) -> None:
        self.thread = threading.Thread(target=self._run, args=(pid, after, seconds), daemon=True)
        self.thread.start()

    @staticmethod
    def _run(pid: int, after: float, seconds: float) -> None:
        time.sleep(after)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def join(self) -> None:
        self.thread.join(10)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("step", ["admission", "settlement"])
def test_a_redis_pause_at_each_step_leaves_spend_and_reservations_exact(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    own_redis: Any,
    step: str,
    stream: bool,
) -> None:
    url = serve(
        make_settings(
            redis_url=own_redis.url,
            redis_prefix="{kb}:",
            redis_timeout_ms=300,
            auth_required=True,
            admin_api_key=ADMIN,
            reservation_hold_s=1.0,
        )
    )
    r = redis.Redis.from_url(own_redis.url)
    key = new_key(url)
    path = "/v1/chat/completions"
    body = {"model": "fake/model-a", "messages": MSG, "max_tokens": 10, "stream": stream}
    headers = {"x-api-key": key}
    assert own_redis.proc is not None
    if step == "admission":
        # Paused before the request: the admission times out (503) but runs once Redis resumes; its
        # reservation's settlement never comes.
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            assert httpx.post(url + path, json=body, headers=headers, timeout=10).status_code == 503
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        assert not fake.chats  # fail closed
        time.sleep(1.2)  # past the hold
    else:
        # Paused while the upstream answers (300 ms): the settlement meets a stopped Redis for 0.8 s.
        fake.script([{"kind": "ok", "latency_ms": 300, "cost": 0.002}])
        # The client is made first (an SSL context: ~0.1-0.2 s on a loaded machine), so the pause meets the call.
        with httpx.Client(timeout=10) as http:
            http.get(url + "/healthz")  # connected, and the server warm
            pause = Paused(own_redis.proc.pid, after=0.15, seconds=0.8)
            with http.stream("POST", url + path, json=body, headers=headers) as resp:
                assert resp.status_code == 200
                resp.read()
        pause.join()
    fake.script([{"kind": "ok", "cost": 0.001}])
    resp = httpx.post(url + path, json={**body, "stream": False}, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 10  # the records are written after the answers left: wait for them
    while True:
        spend, reserved = money(r, "{kb}:", key)
        expected = 3_000_000 if step == "settlement" else 1_000_000
        if (spend, reserved) == (expected, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (spend, reserved) == (expected, 0)
    assert int(r.hget("{kb}:stats", "ok") or 0) == (2 if step == "settlement" else 1)
    r.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/kilo/generate-stream"])
def test_a_stream_ends_for_its_client_while_its_usage_waits_for_redis(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    own_redis: Any,
    path: str,
) -> None:
    # The last event and the end of the response do not wait for the usage record (a Redis round trip, or
    # its retries when Redis stalls); the record is still written, once, when Redis is back.
    url = serve(
        make_settings(
            redis_url=own_redis.url, redis_prefix="{kb}:", redis_timeout_ms=300, auth_required=True, admin_api_key=ADMIN
        )
    )
    r = redis.Redis.from_url(own_redis.url)
    key = new_key(url)
    fake.script([{"kind": "ok", "cost": 0.002}])
    body: dict[str, Any] = {"model": "fake/model-a"}
    body |= {"messages": MSG, "stream": True} if path.startswith("/v1") else {"prompt": "x"}
    assert own_redis.proc is not None
    with httpx.stream("POST", url + path, json=body, headers={"x-api-key": key}, timeout=10) as resp:
        assert resp.status_code == 200  # admitted: Redis is not needed again until the record
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            text = resp.read().decode()  # the whole response, terminating chunk included, while Redis is stopped
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
    assert "data: [DONE]" in text if path.startswith("/v1") else "event: done" in text
    deadline = time.monotonic() + 10
    while money(r, "{kb}:", key) != (2_000_000, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert money(r, "{kb}:", key) == (2_000_000, 0)
    assert int(r.hget("{kb}:stats", "ok") or 0) == 1
    r.close()
