"""Our own RESP client, over one pipelined asyncio connection: the two Lua calls every generation makes
(admission, accounting) and every other command the feature stores send (platform/redis.py).

Why not redis-py on the hot path (docs/benchmarks/split.md, uvloop, loopback Redis, CPU per call): redis-py's
asyncio client costs 175 µs per admission EVALSHA against 80 µs for this one asyncio protocol, which packs with
`hiredis.pack_command` and parses with `hiredis.Reader` (the C pieces redis-py itself uses); valkey-glide
(167 µs) and coredis (401 µs) were no cheaper than redis-py (149 µs) in its one-off 7-key comparison. Even
so, the two calls are ≈ 399 of the 871 µs of CPU one request costs the server (same report), so they go
through this. Why not redis-py for the rest (docs/benchmarks/coldstart.md): importing it is ~40 ms of every
Lambda function's cold start (62 modules: the sync, cluster and sentinel clients, every command mixin) for
the dozen commands our stores send; only bullmq (the local queue and scheduler) still brings it.

One connection per event loop, shared by every request: replies come back in order, so concurrent
calls pipeline on it (an abandoned call keeps its place in the queue; its reply is dropped). A timeout
or a lost connection closes it and fails what was in flight; the next call opens a new one. URLs are read
as redis-py reads them: redis://[user:password@]host[:port][/db], rediss:// (TLS), unix://path[?db=n].
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis


class RedisError(Exception):
    """A Redis command failed: the base of what this client raises."""


class ResponseError(RedisError):
    """Redis answered with an error (a refused command, NOSCRIPT, WRONGPASS, a failing script)."""


class RedisConnectionError(RedisError, ConnectionError):
    """No connection to Redis, or it was lost (an OSError, as socket errors are)."""


class RedisTimeoutError(RedisError, TimeoutError):
    """Redis did not answer in time."""


def parse_url(url: str) -> dict[str, Any]:
    """host, port, path (unix), db, username, password and tls of a Redis URL, unquoted as redis-py does."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("Redis URL must start with redis://, rediss:// (TLS) or unix://")
    query = parse_qs(parts.query)
    options: dict[str, Any] = {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls": parts.scheme == "rediss",
    }
    db = query.get("db", [""])[0]
    if parts.scheme == "unix":
        options["path"] = unquote(parts.path)
    else:
        options["host"] = unquote(parts.hostname) if parts.hostname else "localhost"
        options["port"] = parts.port or 6379
        db = db or parts.path.lstrip("/")
    options["db"] = int(db) if db else 0
    return options


class _Protocol(asyncio.Protocol):
    def __init__(self, decode: bool) -> None:
        # decode: bulk replies as str (UTF-8, strict), as redis-py's decode_responses=True gives them.
        self.reader = hiredis.Reader(encoding="utf-8") if decode else hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.last_reply = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.last_reply = time.monotonic()
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
        return self.send_many((args,))[0]

    def send_many(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """The commands in one write: nothing another task sends comes between them (a MULTI … EXEC block)."""
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise self.lost or RedisConnectionError("connection to Redis closed")
        payload = b"".join(hiredis.pack_command(args) for args in commands)
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in commands]
        self.waiters.extend(waiters)
        self.transport.write(payload)
        return waiters


class RespConnection:
    """`await conn.call(*command)`, `await conn.pipeline(commands)`, and `await conn.evalsha(script, keys, args)`:
    a Lua script by its SHA1, loaded again on NOSCRIPT.

    decode: bulk replies as str rather than bytes. health_check_s: a connection idle longer than this is
    checked with a PING before it carries a command, and replaced if it does not answer (redis-py's
    health_check_interval): the server may have closed it while the process was idle or frozen (a thawed
    Lambda), and a command sent on a dead socket may or may not have run."""

    def __init__(
        self, url: str, timeout_s: float, *, decode: bool = False, health_check_s: float | None = None
    ) -> None:
        self.options = parse_url(url)
        self.timeout_s = timeout_s
        self.decode = decode
        self.health_check_s = health_check_s
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is not None and self._loop is loop and proto.lost is None:
            if self.health_check_s is None or time.monotonic() - proto.last_reply < self.health_check_s:
                return proto
            if await self._answers(proto):
                return proto
        if self._loop is not loop:
            self._opening, self._loop, self._proto = asyncio.Lock(), loop, None
        assert self._opening is not None
        async with self._opening:  # concurrent first calls share one new connection
            if self._proto is None or self._proto.lost is not None:
                self._proto = await self._open(loop)
            return self._proto

    async def _answers(self, proto: _Protocol) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                await proto.send(("PING",))
        except (RedisError, OSError, TimeoutError):
            proto.close(RedisConnectionError("Redis health check failed"))
            return False
        return True

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self.options

        def protocol() -> _Protocol:
            return _Protocol(self.decode)

        try:
            async with asyncio.timeout(self.timeout_s):
                if "path" in o:
                    _, proto = await loop.create_unix_connection(protocol, o["path"])
                else:
                    tls = ssl.create_default_context() if o["tls"] else None
                    _, proto = await loop.create_connection(protocol, o["host"], o["port"], ssl=tls)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis ({type(exc).__name__})") from exc
        hello: list[tuple[Any, ...]] = []
        if o["password"]:
            user = o["username"]
            hello.append(("AUTH", user, o["password"]) if user else ("AUTH", o["password"]))
        if o["db"]:
            hello.append(("SELECT", o["db"]))
        try:
            for command in hello:
                _raise_error(await proto.send(command))
        except BaseException:
            proto.close(RedisConnectionError("Redis handshake failed"))
            raise
        return proto

    async def call(self, *args: Any, timeout_s: float | None = None) -> Any:
        """One command's reply (an error reply raised as ResponseError)."""
        return (await self._send([args], timeout_s))[0]

    async def pipeline(self, commands: Sequence[tuple[Any, ...]], timeout_s: float | None = None) -> list[Any]:
        """Several commands in one round trip, their replies in order; the first error reply is raised once all
        have answered (redis-py's `pipeline().execute()`)."""
        return await self._send(commands, timeout_s)

    async def _send(self, commands: Sequence[tuple[Any, ...]], timeout_s: float | None) -> list[Any]:
        proto = await self._connection()
        waiters = proto.send_many(commands)
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                replies = [await waiter for waiter in waiters]
        except TimeoutError as exc:
            if isinstance(exc, RedisError):  # another call's timeout closed the connection under this one
                raise
            # (A cancelled waiter keeps its place in the queue, so order holds; but a Redis this slow is
            # better met with a new connection.)
            proto.close(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError(f"Redis did not answer within {limit:g} s") from None
        finally:
            for waiter in waiters:  # a pipeline's later replies failed with the first: their errors are this one
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()
        for command, reply in zip(commands, replies, strict=True):
            _raise_error(reply)
            if command[0] == "EXEC" and isinstance(reply, list):  # a command of the transaction that failed
                for item in reply:
                    _raise_error(item)
        return replies

    async def evalsha(self, script: Script, keys: list[str], args: list[Any], *, idempotent: bool = True) -> Any:
        """Run a script (usage/lua: each is keyed by its admission id).

        An idempotent script on a connection found lost when the call is made — the server closed it while this
        process was idle or frozen (a thawed Lambda), or restarted — is sent once more on a new one: safe, because
        a script that did run is a no-op the second time. A timeout is not retried (Redis may be stuck, not gone)."""
        try:
            return await self._evalsha(script, keys, args)
        except RedisConnectionError:
            if not idempotent:
                raise
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
