"""The Redis handle every feature store shares: one client per event loop, key naming under the
configured prefix, Lua scripts loaded once from `.lua` files, and "Redis is down" as one domain error.

Feature packages own their key families and scripts (usage/, keys/, jobs/); this module only joins a
key's parts under the prefix and runs what they hand it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kilo_bridge.config import Settings
from kilo_bridge.errors import Unavailable
from kilo_bridge.platform.aio import PerLoop
from kilo_bridge.platform.resp import RespConnection


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
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        timeout = settings.redis_timeout_ms / 1000
        self._client: PerLoop[aioredis.Redis] = PerLoop(
            lambda: aioredis.Redis.from_url(
                settings.resolved_redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
                max_connections=1024,
                decode_responses=True,
            )
        )
        self._scripts: dict[str, tuple[aioredis.Redis, AsyncScript]] = {}
        # The two calls of every generation go through a leaner, pipelined connection (resp.py).
        self.hot = RespConnection(settings.resolved_redis_url, timeout)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def redis(self) -> aioredis.Redis:
        return self._client.get()

    async def run(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script (EVALSHA, loaded on first use and again after a flush)."""
        client = self.redis
        cached = self._scripts.get(source)
        if cached is None or cached[0] is not client:
            cached = (client, client.register_script(source))
            self._scripts[source] = cached
        return await cached[1](keys=list(keys), args=list(args))

    # Typed reads (the client decodes replies to str): what the feature stores read through.
    async def hash(self, key: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(key))

    async def hashes(self, keys: Iterable[str]) -> list[dict[str, str]]:
        """Several hashes in one round trip (a pipeline, not a transaction)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return cast(list[dict[str, str]], await pipe.execute())

    async def field(self, key: str, name: str) -> str | None:
        return cast(str | None, await self.redis.hget(key, name))

    async def fields(self, key: str, *names: str) -> list[str | None]:
        return cast(list[str | None], await self.redis.hmget(key, list(names)))

    async def members(self, key: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(key))

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """An unreachable Redis becomes StoreUnavailable, which the caller can explain."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc

    async def close(self) -> None:
        await self.hot.close()
        client = self._client.current()
        if client is not None:
            await client.aclose()
        self._client.forget()
        self._scripts.clear()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False
