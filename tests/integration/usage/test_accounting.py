"""Counters stay exact under hundreds of concurrent requests (one Lua call per request, no races)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from kilo_bridge.money import NANO
from tests.support import counters, number

N = 300


async def _fire(url: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(i: int) -> int:
            if i % 3 == 0:
                async with client.stream(
                    "POST", "/api/kilo/generate-stream", json={"prompt": "a b c", "model": "fake/model-a"}
                ) as resp:
                    await resp.aread()
                    return resp.status_code
            resp = await client.post("/api/kilo/generate", json={"prompt": "a b c", "model": "fake/model-a"})
            return resp.status_code

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_counters_are_exact_after_concurrent_requests(base_url: str, redis_client: redis.Redis, prefix: str) -> None:
    codes = asyncio.run(_fire(base_url, N))
    assert codes == [200] * N
    totals = counters(redis_client, prefix + "stats")
    streams = len(range(0, N, 3))
    plain = N - streams
    assert totals["requests"] == N
    assert totals["ok"] == N
    assert totals["streams"] == streams
    # fake: prompt "a b c" = 3 tokens; completion = 5 chunks streamed, 6 words ("Echo: a b c" → 4) plain
    prompt_tokens = totals["prompt_tokens"] // N
    assert totals["prompt_tokens"] == prompt_tokens * N
    model = counters(redis_client, prefix + "stats:model:fake/model-a")
    assert model["ok"] == N and model["requests"] == N
    # spend is integer nano-USD: exact sum of each call's price
    per_stream = prompt_tokens * 1_000 + 5 * 2_000  # nano-USD at 1e-6 / 2e-6 USD per token
    plain_completion = (totals["completion_tokens"] - 5 * streams) // plain
    per_plain = prompt_tokens * 1_000 + plain_completion * 2_000
    assert totals["spend_nusd"] == streams * per_stream + plain * per_plain
    credits_spent = number(redis_client.hget(prefix + "credits", "spent_since_nusd"))
    assert credits_spent == totals["spend_nusd"]
    assert credits_spent / NANO == pytest.approx(totals["spend_nusd"] / NANO)
