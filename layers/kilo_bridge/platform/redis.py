"""The Redis handle every feature store shares: one connection per event loop, key naming under the
configured prefix, Lua scripts loaded once from `.lua` files, and "Redis is down" as one domain error.

Feature packages own their key families and scripts (usage/, keys/, jobs/); this module only joins a
key's parts under the prefix and runs what they hand it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

from kilo_bridge.config import Settings
from kilo_bridge.errors import Unavailable
from kilo_bridge.platform.resp import RedisConnectionError, RedisError, RedisTimeoutError, RespConnection, Script

# A connection idle this long is checked (PING) before it carries a command (RespConnection.health_check_s).
HEALTH_CHECK_S = 30.0


class StoreUnavailable(Unavailable, code="store_unavailable"):
    """Redis cannot be reached: the request is refused rather than served uncounted."""

    def __init__(self) -> None:
        super().__init__(
            "The Redis store is unreachable; requests are refused until it is back so no spend goes uncounted.",
            retry_after=5,
        )


# What "Redis did not answer" looks like to a caller that may wait and try again (not a refused command).
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError, StoreUnavailable)


@cache
def lua(directory: Path, *names: str) -> str:
    """The source of `names` (files `<name>.lua` in `directory`), joined in order: a script that uses a
    shared function names its file first."""
    return "\n".join((directory / f"{name}.lua").read_text() for name in names)


class Store:
    """Commands go through our RESP client (platform/resp.py), not redis-py: one pipelined connection per event
    loop for the commands of every request (replies decoded to str), one for the hot path's two Lua calls
    (bytes), and a blocking read (XREAD BLOCK) on a connection of its own, taken from a free list, so it holds
    up nobody else's commands."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.timeout_s = settings.redis_timeout_ms / 1000
        url = settings.resolved_redis_url
        self._conn = RespConnection(url, self.timeout_s, decode=True, health_check_s=HEALTH_CHECK_S)
        self._blocking: list[RespConnection] = []
        self._scripts: dict[str, Script] = {}
        # The two calls of every generation go through a leaner connection of their own (usage/ledger.py).
        self.hot = RespConnection(url, self.timeout_s)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def call(self, *command: Any) -> Any:
        """One command, its reply decoded (bulk strings as str; an error reply raised as ResponseError)."""
        return await self._conn.call(*command)

    async def pipeline(self, *commands: tuple[Any, ...], transaction: bool = False) -> list[Any]:
        """Several commands in one round trip; `transaction`: inside MULTI … EXEC, all or none applied."""
        if not transaction:
            return await self._conn.pipeline(commands)
        replies = await self._conn.pipeline([("MULTI",), *commands, ("EXEC",)])
        return cast(list[Any], replies[-1])

    async def run(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script (EVALSHA, EVAL again after a flush). Not sent twice: the feature stores' scripts need
        not be idempotent."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = Script(source)
        return await self._conn.evalsha(script, list(keys), list(args), idempotent=False)

    # Typed reads: what the feature stores read through.
    async def hash(self, key: str) -> dict[str, str]:
        return _pairs(await self.call("HGETALL", key))

    async def hashes(self, keys: Iterable[str]) -> list[dict[str, str]]:
        """Several hashes in one round trip (a pipeline, not a transaction)."""
        commands = [("HGETALL", key) for key in keys]
        return [_pairs(reply) for reply in await self.pipeline(*commands)] if commands else []

    async def field(self, key: str, name: str) -> str | None:
        return cast(str | None, await self.call("HGET", key, name))

    async def fields(self, key: str, *names: str) -> list[str | None]:
        return cast(list[str | None], await self.call("HMGET", key, *names))

    async def members(self, key: str) -> set[str]:
        return set(await self.call("SMEMBERS", key))

    async def set_fields(self, key: str, mapping: Mapping[str, str | int | float | bytes]) -> None:
        """HSET of several fields at once."""
        await self.call("HSET", key, *hset_args(mapping))

    async def stream_after(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """A stream's entries after the id `after` (XRANGE, exclusive start), at most `count`."""
        return _entries(await self.call("XRANGE", key, "(" + after, "+", "COUNT", count))

    async def stream_wait(self, key: str, after: str, count: int, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        """Like stream_after, but waits up to `block_ms` for an entry when there is none yet (XREAD BLOCK), on a
        connection of its own."""
        conn = self._blocking.pop() if self._blocking else self._new_blocking()
        try:
            reply = await conn.call(
                "XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", key, after,
                timeout_s=block_ms / 1000 + self.timeout_s,
            )  # fmt: skip
        except BaseException:
            # A read cancelled (its client hung up) or failed may leave its XREAD blocking on the connection:
            # closed, not handed to the next reader, who would wait behind it.
            await conn.close()
            raise
        self._blocking.append(conn)
        return _entries(reply[0][1]) if reply else []

    def _new_blocking(self) -> RespConnection:
        return RespConnection(self.settings.resolved_redis_url, self.timeout_s, decode=True)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """An unreachable Redis becomes StoreUnavailable, which the caller can explain."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc

    async def close(self) -> None:
        await self.hot.close()
        await self._conn.close()
        for conn in self._blocking:
            await conn.close()
        self._blocking.clear()

    async def ping(self) -> bool:
        try:
            return bool(await self.call("PING"))
        except (RedisError, OSError):
            return False


def hset_args(mapping: Mapping[str, Any]) -> list[Any]:
    """field, value, field, value… of a mapping, for HSET."""
    return [item for pair in mapping.items() for item in pair]


def _pairs(reply: list[str]) -> dict[str, str]:
    """A flat [field, value, …] reply (HGETALL, a stream entry's fields) as a dict."""
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _entries(reply: list[list[Any]] | None) -> list[tuple[str, dict[str, str]]]:
    return [(entry_id, _pairs(fields)) for entry_id, fields in reply or []]
