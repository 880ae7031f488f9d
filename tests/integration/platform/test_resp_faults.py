"""The hot Redis connection under the faults a serverless process meets: a socket the server closed while
the process was idle (a thawed Lambda) costs no error, and a lost script cache is refilled with EVAL on the
node that holds the keys (never a keyless SCRIPT LOAD)."""

from __future__ import annotations

from typing import Any

import redis

from kilo_bridge.platform.resp import RespConnection, Script

INCR = Script("return redis.call('INCR', KEYS[1])")


async def test_a_socket_the_server_closed_while_idle_is_replaced_once(own_redis: Any) -> None:
    conn = RespConnection(own_redis.url, 1.0)
    admin = redis.Redis(port=own_redis.port)
    try:
        assert await conn.evalsha(INCR, ["n"], []) == 1
        # The server drops our idle connection (its `timeout`, a failover, a frozen Lambda's socket); nothing
        # runs on this loop in between, as when a frozen process is thawed and calls at once.
        admin.client_kill_filter(_type="normal", skipme=True)
        assert await conn.evalsha(INCR, ["n"], []) == 2  # no error, and it ran once
    finally:
        await conn.close()
        admin.close()


async def test_noscript_falls_back_to_eval(own_redis: Any) -> None:
    conn = RespConnection(own_redis.url, 1.0)
    admin = redis.Redis(port=own_redis.port, decode_responses=True)
    try:
        assert await conn.evalsha(INCR, ["k"], []) == 1
        admin.script_flush()
        admin.config_resetstat()
        assert await conn.evalsha(INCR, ["k"], []) == 2
        stats = admin.info("commandstats")
        assert stats["cmdstat_eval"]["calls"] == 1 and "cmdstat_script|load" not in stats
        assert admin.script_exists(INCR.sha) == [True]  # cached again by the EVAL
    finally:
        await conn.close()
        admin.close()
