"""The hot-path Redis connection (kilo_bridge.resp) against real Redis servers: pipelined replies stay in
order, scripts are reloaded after a flush, a stuck or restarted Redis costs one error and no mixed-up reply,
credentials and database come from the URL."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis

from kilo_bridge.platform.resp import RedisConnectionError, RedisTimeoutError, RespConnection, ResponseError, Script
from tests.support import REDIS_URL, RedisServer

INCR = Script("return redis.call('INCR', KEYS[1])")


async def test_concurrent_calls_pipeline_and_each_gets_its_own_reply(prefix: str) -> None:
    conn = RespConnection(REDIS_URL, 2.0)
    try:
        await conn.evalsha(INCR, [prefix + "warm"], [])  # loaded: no NOSCRIPT retry reorders the calls below
        replies = await asyncio.gather(*(conn.evalsha(INCR, [prefix + "n"], []) for _ in range(500)))
        assert replies == list(range(1, 501))  # sent in order, answered in order, matched in order
        assert await conn.call("ECHO", "after") == b"after"
    finally:
        await conn.close()


async def test_scripts_are_loaded_again_after_a_flush(prefix: str, redis_client: redis.Redis) -> None:
    conn = RespConnection(REDIS_URL, 2.0)
    try:
        await conn.evalsha(INCR, [prefix + "s"], [])
        redis_client.script_flush()  # what a Redis restart or failover does to the script cache
        assert await conn.evalsha(INCR, [prefix + "s"], []) == 2  # ran once, not twice
        with pytest.raises(ResponseError):
            await conn.call("NO-SUCH-COMMAND")
        assert await conn.call("ECHO", "still fine") == b"still fine"
    finally:
        await conn.close()


async def test_a_stuck_redis_times_out_and_no_late_reply_is_mixed_up(own_redis: RedisServer) -> None:
    conn = RespConnection(own_redis.url, 0.3)
    try:
        assert await conn.call("ECHO", "warm") == b"warm"
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await conn.call("ECHO", "late")
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        # The late "late" reply must not answer this call: a new connection is opened.
        assert await conn.call("ECHO", "fresh") == b"fresh"
    finally:
        await conn.close()


async def test_a_restarted_redis_fails_the_call_then_reconnects(own_redis: RedisServer) -> None:
    conn = RespConnection(own_redis.url, 0.5)
    try:
        assert await conn.evalsha(INCR, ["k"], []) == 1
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await conn.evalsha(INCR, ["k"], [])
        own_redis.start()  # empty, and without our script
        assert await conn.evalsha(INCR, ["k"], []) == 1
    finally:
        await conn.close()


async def test_password_and_database_come_from_the_url(own_redis: RedisServer) -> None:
    admin = redis.Redis(port=own_redis.port)
    admin.config_set("requirepass", "test-password-not-real")
    url = f"redis://:test-password-not-real@127.0.0.1:{own_redis.port}/3"
    conn = RespConnection(url, 1.0)
    try:
        assert await conn.evalsha(INCR, ["in-db-3"], []) == 1
    finally:
        await conn.close()
    checker = redis.Redis(port=own_redis.port, password="test-password-not-real", db=3)
    assert checker.get("in-db-3") == b"1"
    with pytest.raises(ResponseError, match="WRONGPASS"):
        await RespConnection(f"redis://:wrong@127.0.0.1:{own_redis.port}/0", 1.0).call("PING")
