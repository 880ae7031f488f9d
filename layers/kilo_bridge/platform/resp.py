"""A pipelined RESP connection for the two Lua calls every generation makes (admission, accounting).

Why not redis-py here (docs/benchmarks/split.md, uvloop, loopback Redis, CPU per call): redis-py's asyncio
client costs 175 µs per admission EVALSHA against 80 µs for this one asyncio protocol, which packs with
`hiredis.pack_command` and parses with `hiredis.Reader` (the C pieces redis-py itself uses); valkey-glide
(167 µs) and coredis (401 µs) were no cheaper than redis-py (149 µs) in its one-off 7-key comparison. Even
so, the two calls are ≈ 399 of the 871 µs of CPU one request costs the server (same report), so they go
through this; everything else (jobs, keys, stats, bullmq) keeps redis-py.

One connection per event loop, shared by every request: replies come back in order, so concurrent
calls pipeline on it (an abandoned call keeps its place in the queue; its reply is dropped). A timeout
or a lost connection closes it and fails what was in flight; the next call opens a new one. URL, TLS
and credentials are read the way redis-py reads them (`redis.asyncio.connection.parse_url`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiters:  # a reply nobody asked for: the stream is out of step
                self.close(RedisConnectionError("unexpected reply from Redis"))
                return
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost ({type(exc).__name__ if exc else 'closed'})"))

    def fail(self, exc: Exception) -> None:
        self.lost = self.lost or exc
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)

    def close(self, exc: Exception) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise self.lost or RedisConnectionError("connection to Redis closed")
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(hiredis.pack_command(args))
        return waiter


class RespConnection:
    """`await conn.evalsha(script, keys, args)`: a Lua script by its SHA1, loaded again on NOSCRIPT."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.options = parse_url(url)
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is not None and self._loop is loop and proto.lost is None:
            return proto
        if self._loop is not loop:
            self._opening, self._loop, self._proto = asyncio.Lock(), loop, None
        assert self._opening is not None
        async with self._opening:  # concurrent first calls share one new connection
            if self._proto is None or self._proto.lost is not None:
                self._proto = await self._open(loop)
            return self._proto

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self.options
        tls = ssl.create_default_context() if o.get("connection_class") is SSLConnection else None
        try:
            _, proto = await loop.create_connection(_Protocol, o.get("host", "localhost"), o.get("port", 6379), ssl=tls)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis ({type(exc).__name__})") from exc
        hello: list[tuple[Any, ...]] = []
        if o.get("password"):
            user = o.get("username")
            hello.append(("AUTH", user, o["password"]) if user else ("AUTH", o["password"]))
        if o.get("db"):
            hello.append(("SELECT", o["db"]))
        try:
            for command in hello:
                _raise_error(await proto.send(command))
        except BaseException:
            proto.close(RedisConnectionError("Redis handshake failed"))
            raise
        return proto

    async def call(self, *args: Any) -> Any:
        proto = await self._connection()
        waiter = proto.send(args)
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await waiter
        except TimeoutError:
            # (A cancelled waiter keeps its place in the queue, so order holds; but a Redis this slow is
            # better met with a new connection.)
            proto.close(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout_s:g} s") from None
        return _raise_error(reply)

    async def evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run an idempotent script (usage/lua: each is keyed by its admission id).

        A connection found lost when the call is made — the server closed it while this process was idle or
        frozen (a thawed Lambda), or restarted — is replaced and the call sent once more: safe, because a script
        that did run is a no-op the second time. A timeout is not retried (Redis may be stuck, not gone)."""
        try:
            return await self._evalsha(script, keys, args)
        except RedisConnectionError:
            return await self._evalsha(script, keys, args)

    async def _evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its scripts: EVAL runs it (it did not run the first time) and caches it
        # again, on the node that holds its keys (a keyless SCRIPT LOAD may land on another in a cluster).
        return await self.call("EVAL", script.source, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._proto is not None and self._loop is asyncio.get_running_loop():  # another loop's is gone already
            self._proto.close(RedisConnectionError("connection closed"))
        self._proto = None


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1


def _raise_error(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        raise ResponseError(str(reply))
    return reply
