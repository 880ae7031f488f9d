"""The Store's commands over our RESP client (platform/resp.py, no redis-py) against real Redis servers: replies
decoded as the stores read them, transactions all in one write, a blocking read on a connection of its own, an idle
connection the server dropped replaced before it carries a command, and URLs read as redis-py reads them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from kilo_bridge.config import Settings
from kilo_bridge.platform.redis import Store
from kilo_bridge.platform.resp import RespConnection, ResponseError, parse_url
from tests.support import RedisServer


async def test_replies_are_decoded_as_the_stores_read_them(store_settings: Settings) -> None:
    store = Store(store_settings)
    key = store.key("t", "h")
    try:
        await store.set_fields(key, {"a": 1, "b": "x", "c": 2.5, "d": b"raw"})
        assert await store.hash(key) == {"a": "1", "b": "x", "c": "2.5", "d": "raw"}
        assert await store.hash(store.key("t", "none")) == {}
        assert await store.field(key, "b") == "x" and await store.field(key, "zz") is None
        assert await store.fields(key, "a", "zz") == ["1", None]
        assert await store.hashes([key, store.key("t", "none")]) == [await store.hash(key), {}]
        assert await store.hashes([]) == []
        await store.call("SADD", store.key("t", "s"), "m1", "m2")
        assert await store.members(store.key("t", "s")) == {"m1", "m2"}
        assert await store.call("SET", store.key("t", "once"), "1", "EX", 60, "NX") == "OK"
        assert await store.call("SET", store.key("t", "once"), "1", "EX", 60, "NX") is None
        assert await store.ping() is True
    finally:
        await store.close()


async def test_a_transaction_is_applied_whole_and_a_failing_command_is_raised(store_settings: Settings) -> None:
    store = Store(store_settings)
    key, other = store.key("t", "tx"), store.key("t", "tx2")
    try:
        replies = await store.pipeline(("HSET", key, "f", "v"), ("EXPIRE", key, 60), transaction=True)
        assert replies == [1, 1]  # EXEC's replies, not MULTI's OK and the QUEUEDs
        await store.call("SET", other, "a string")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await store.pipeline(("HSET", other, "f", "v"), ("EXPIRE", key, 120), transaction=True)
        assert await store.call("TTL", key) > 60  # Redis ran the rest of the transaction, as it does
        assert await store.call("ECHO", "still in step") == "still in step"
    finally:
        await store.close()


async def test_a_blocking_read_holds_up_no_other_command(store_settings: Settings) -> None:
    store = Store(store_settings)
    key = store.key("t", "log")
    try:
        await store.call("XADD", key, "*", "l", "first")
        [(first_id, first)] = await store.stream_after(key, "0-0", 10)
        assert first == {"l": "first"}
        waiting = asyncio.create_task(store.stream_wait(key, first_id, 10, 10_000))
        while "blocked_clients:0" in await store.call("INFO", "clients"):  # until its XREAD blocks in Redis
            await asyncio.sleep(0.01)
        # Were the wait on the shared connection, this XADD would queue behind it until the block ran out, and
        # the wait would end with nothing.
        await store.call("XADD", key, "*", "l", "second")
        assert [fields for _, fields in await waiting] == [{"l": "second"}]
        assert await store.stream_wait(key, "0-0", 10, 10_000) != []  # answered at once: there are entries
    finally:
        await store.close()


async def test_an_idle_connection_the_server_dropped_is_replaced_before_a_command(own_redis: RedisServer) -> None:
    conn = RespConnection(own_redis.url, 1.0, decode=True, health_check_s=0.0)  # every call counts as idle
    admin = redis.Redis(port=own_redis.port)
    try:
        assert await conn.call("INCR", "n") == 1
        admin.client_kill_filter(_type="normal", skipme=True)
        assert await conn.call("INCR", "n") == 2  # no error, and it ran once
    finally:
        await conn.close()
        admin.close()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    socket_path = tmp_path / "redis.sock"
    server.extra = ["--unixsocket", str(socket_path)]
    server.start()
    conn = RespConnection(f"unix://{socket_path}?db=2", 1.0, decode=True)
    try:
        assert await conn.call("SET", "k", "v") == "OK"
    finally:
        await conn.close()
        checker = redis.Redis(unix_socket_path=str(socket_path), db=2, decode_responses=True)
        assert checker.get("k") == "v"
        checker.close()
        server.stop()


def test_urls_are_read_as_redis_py_reads_them() -> None:
    assert parse_url("rediss://kilo-bridge:p%40ss%3Aword@cache.example:6380/4") == {
        "username": "kilo-bridge",
        "password": "p@ss:word",
        "tls": True,
        "host": "cache.example",
        "port": 6380,
        "db": 4,
    }
    assert parse_url("redis://:secret-not-real@localhost")["password"] == "secret-not-real"
    assert parse_url("redis://h")["db"] == 0 and parse_url("redis://h/0?db=5")["db"] == 5
    assert parse_url("unix:///run/redis.sock?db=1") == {
        "username": None,
        "password": None,
        "tls": False,
        "path": "/run/redis.sock",
        "db": 1,
    }
    with pytest.raises(ValueError, match="redis://"):
        parse_url("http://localhost:6379")


async def test_a_cancelled_blocking_read_leaves_no_read_pending_for_the_next(store_settings: Settings) -> None:
    store = Store(store_settings)
    idle, busy = store.key("t", "idle"), store.key("t", "busy")
    try:
        waiting = asyncio.create_task(store.stream_wait(idle, "$", 10, 60_000))  # a follower of an idle log
        while "blocked_clients:0" in await store.call("INFO", "clients"):  # until its XREAD blocks in Redis
            await asyncio.sleep(0.01)
        waiting.cancel()  # its client hung up
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await store.call("XADD", busy, "*", "l", "line")
        # Were the cancelled read's connection handed on, this read would queue behind its 60 s block and time
        # out (its own limit is its 100 ms block plus the Redis timeout).
        assert [fields for _, fields in await store.stream_wait(busy, "0-0", 10, 100)] == [{"l": "line"}]
    finally:
        await store.close()
