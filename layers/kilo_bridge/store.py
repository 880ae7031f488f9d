"""Redis store for credits and usage stats.

Each generate request costs two round trips: admission before the upstream call (API key, rate limits
and budget reservation; it also proves Redis is reachable, so spend is never made that cannot be
counted) and accounting after it. Both are single Lua calls: atomic, exact under concurrency, no
read-modify-write in Python.

Money is kept as integer nano-USD (1e-9): HINCRBY is exact where HINCRBYFLOAT would drift.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kilo_bridge.aio import PerLoop
from kilo_bridge.config import Settings
from kilo_bridge.errors import ApiError, invalid_key, store_unavailable
from kilo_bridge.resp import RespConnection, Script

NANO = 1_000_000_000
DAY_TTL_S = 40 * 86_400  # per-day counters are kept a little over a month
COUNTER_FIELDS = ("requests", "ok", "failed", "streams", "prompt_tokens", "completion_tokens", "unpriced")

# Admission: one call before any upstream request. KEYS: totals, day, api-key record, this minute's
# request and token windows. ARGV: day_ttl, has_key, estimate_nusd, seconds left in the minute.
# Returns {0} (admitted), {401}, {402} (budget) or {429, retry_after_s}.
_ADMIT = """
if ARGV[2] == '1' then
  local k = redis.call('HMGET', KEYS[3], 'revoked', 'budget_nusd', 'spend_nusd', 'reserved_nusd', 'rpm', 'tpm')
  if k[1] ~= '0' then return {401} end
  local rpm, tpm = tonumber(k[5]), tonumber(k[6])
  if rpm > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= rpm then return {429, tonumber(ARGV[4])} end
  if tpm > 0 and tonumber(redis.call('GET', KEYS[5]) or '0') >= tpm then return {429, tonumber(ARGV[4])} end
  local budget, estimate = tonumber(k[2]), tonumber(ARGV[3])
  if budget > 0 and tonumber(k[3]) + tonumber(k[4]) + estimate > budget then return {402} end
  redis.call('HINCRBY', KEYS[3], 'reserved_nusd', estimate)
  redis.call('HINCRBY', KEYS[3], 'requests', 1)
  if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], 120) end
end
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HINCRBY', KEYS[2], 'requests', 1)
redis.call('EXPIRE', KEYS[2], ARGV[1])
return {0}
"""

# Accounting: one call after the upstream answered (or failed).
# KEYS: totals, day, model, models-set, credits, api-key record, this minute's token window.
# ARGV: outcome, stream(0/1), prompt, completion, cost_nusd, unpriced(0/1), model, day_ttl, exhausted(0/1), now,
#       has_key(0/1), reserved_nusd, key_charge_nusd (the cost, or the reservation when the cost is unknown)
_RECORD = """
local outcome = ARGV[1]
local stream, pt, ct = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, unpriced = tonumber(ARGV[5]), tonumber(ARGV[6])
local n = 3
if ARGV[11] == '1' then n = 6 end
redis.call('HINCRBY', KEYS[3], 'requests', 1)
for i = 1, n do
  if i <= 3 or i == 6 then
    local k = KEYS[i]
    redis.call('HINCRBY', k, outcome, 1)
    if stream == 1 then redis.call('HINCRBY', k, 'streams', 1) end
    if pt > 0 then redis.call('HINCRBY', k, 'prompt_tokens', pt) end
    if ct > 0 then redis.call('HINCRBY', k, 'completion_tokens', ct) end
    local spend = cost
    if i == 6 then spend = tonumber(ARGV[13]) end
    if spend > 0 then redis.call('HINCRBY', k, 'spend_nusd', spend) end
    if unpriced == 1 then redis.call('HINCRBY', k, 'unpriced', 1) end
  end
end
if ARGV[11] == '1' then
  redis.call('HINCRBY', KEYS[6], 'reserved_nusd', -tonumber(ARGV[12]))
  if pt + ct > 0 then
    redis.call('INCRBY', KEYS[7], pt + ct)
    redis.call('EXPIRE', KEYS[7], 120)
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('SADD', KEYS[4], ARGV[7])
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[5], 'balance_nusd', 0, 'seen_at', ARGV[10], 'spent_since_nusd', 0,
             'source', 'gateway-402')
elseif cost > 0 then
  redis.call('HINCRBY', KEYS[5], 'spent_since_nusd', cost)
end
return 1
"""


_ADMIT_SCRIPT, _RECORD_SCRIPT = Script(_ADMIT), Script(_RECORD)


@dataclass(slots=True, frozen=True)
class Outcome:
    """What one gateway call cost, as recorded by `Store.record`."""

    model: str
    ok: bool
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    credits_exhausted: bool = False
    # The cost is unknown (no price, no usage) though the upstream answered: charge the key its reservation.
    charge_reservation: bool = False


@dataclass(slots=True, frozen=True)
class Admission:
    """A request let through: whose key (digest) and what it reserved of that key's budget."""

    key_digest: str | None = None
    reserved_nusd: int = 0


_DAY: list[Any] = [-1, ""]  # (epoch day, its date) of the last call: formatting a date per request shows up


def today(now: dt.datetime | None = None) -> str:
    if now is not None:
        return now.strftime("%Y-%m-%d")
    day = int(time.time() // 86_400)
    if day != _DAY[0]:
        _DAY[:] = [day, dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime("%Y-%m-%d")]
    return _DAY[1]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def counters(raw: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {f: int(raw.get(f.encode(), 0)) for f in COUNTER_FIELDS}
    out["spend_usd"] = int(raw.get(b"spend_nusd", 0)) / NANO
    return out


class Store:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        timeout = settings.redis_timeout_ms / 1000
        self._client = PerLoop(
            lambda: aioredis.Redis.from_url(
                settings.resolved_redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
                max_connections=1024,
            )
        )
        self._scripts: dict[str, Any] = {}
        # The two calls of every generation go through a leaner, pipelined connection (resp.py).
        self._hot = RespConnection(settings.resolved_redis_url, timeout)

    # -- plumbing ----------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def redis(self) -> aioredis.Redis:
        return self._client.get()

    def script(self, source: str) -> Any:
        client = self.redis
        cached = self._scripts.get(source)
        if cached is None or cached[0] is not client:
            cached = (client, client.register_script(source))
            self._scripts[source] = cached
        return cached[1]

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """An unreachable Redis becomes a 503 the client can understand."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise store_unavailable() from exc

    async def close(self) -> None:
        await self._hot.close()
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

    # -- generation accounting ---------------------------------------------------------------------
    def _windows(self, key_digest: str, now: float) -> tuple[str, str, int]:
        minute = int(now // 60)
        return (self.key("rl", key_digest, str(minute)), self.key("tl", key_digest, str(minute)),
                60 - int(now % 60))

    async def admit(self, key_digest: str | None = None, estimate_nusd: int = 0) -> Admission:
        """Admission round trip: the key's validity, rate limits and budget (reserving `estimate_nusd`),
        and the request counted. Fails closed (503) if Redis is down, before any upstream call."""
        now = time.time()
        d = key_digest or "-"
        rpm_key, tpm_key, retry_after = self._windows(d, now)
        keys = [self.key("stats"), self.key("stats", "day", today()), self.key("apikey", d), rpm_key, tpm_key]
        args = [DAY_TTL_S, int(key_digest is not None), estimate_nusd, retry_after]
        try:  # (what `guard` does, inline: this is every request's path)
            verdict = await self._hot.evalsha(_ADMIT_SCRIPT, keys, args)
        except (RedisError, OSError) as exc:
            raise store_unavailable() from exc
        status = int(verdict[0])
        if status == 401:
            raise invalid_key()
        if status == 402:
            raise ApiError(402, "budget_exceeded",
                           "This API key's budget cannot cover the request; ask an operator to raise it.")
        if status == 429:
            raise ApiError(429, "rate_limited", "This API key's per-minute limit is reached.",
                           headers={"Retry-After": str(int(verdict[1]))})
        return Admission(key_digest, estimate_nusd if key_digest else 0)

    async def record(self, outcome: Outcome, cost_nusd: int | None, admission: Admission | None = None) -> None:
        """Accounting round trip: counters for totals, the day, the model and the key; the key's
        reservation settled to the real cost; credit spend."""
        admission = admission or Admission()
        d = admission.key_digest or "-"
        _, tpm_key, _ = self._windows(d, time.time())
        keys = [
            self.key("stats"),
            self.key("stats", "day", today()),
            self.key("stats", "model", outcome.model),
            self.key("stats", "models"),
            self.key("credits"),
            self.key("apikey", d),
            tpm_key,
        ]
        args = [
            "ok" if outcome.ok else "failed",
            int(outcome.stream),
            max(0, int(outcome.prompt_tokens)),
            max(0, int(outcome.completion_tokens)),
            max(0, cost_nusd or 0),
            int(cost_nusd is None and outcome.ok),
            outcome.model,
            DAY_TTL_S,
            int(outcome.credits_exhausted),
            _now_iso(),
            int(admission.key_digest is not None),
            admission.reserved_nusd,
            max(0, cost_nusd) if cost_nusd is not None else
            (admission.reserved_nusd if outcome.charge_reservation else 0),
        ]
        try:
            await self._hot.evalsha(_RECORD_SCRIPT, keys, args)
        except (RedisError, OSError) as exc:
            raise store_unavailable() from exc

    # -- credits -----------------------------------------------------------------------------------
    async def set_balance(self, balance_usd: float, source: str) -> None:
        """A fresh balance read resets the spend counted since the previous one."""
        async with self.guard():
            await self.redis.hset(
                self.key("credits"),
                mapping={
                    "balance_nusd": round(balance_usd * NANO),
                    "seen_at": _now_iso(),
                    "spent_since_nusd": 0,
                    "source": source,
                    "last_error": "",
                },
            )

    async def set_credit_error(self, message: str) -> None:
        async with self.guard():
            await self.redis.hset(self.key("credits"), mapping={"last_error": message[:300]})

    async def credits_raw(self) -> dict[str, str]:
        async with self.guard():
            raw = await self.redis.hgetall(self.key("credits"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- stats -------------------------------------------------------------------------------------
    async def stats_raw(self, days: int = 7) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        day_names = [today(now - dt.timedelta(days=i)) for i in range(days)]
        async with self.guard():
            models = sorted(m.decode() for m in await self.redis.smembers(self.key("stats", "models")))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(self.key("stats"))
            for d in day_names:
                pipe.hgetall(self.key("stats", "day", d))
            for m in models:
                pipe.hgetall(self.key("stats", "model", m))
            pipe.hgetall(self.key("stats", "agents"))
            pipe.hgetall(self.key("credits"))
            results = await pipe.execute()
        totals, rest = results[0], results[1:]
        by_day = dict(zip(day_names, rest[:days], strict=True))
        by_model = dict(zip(models, rest[days : days + len(models)], strict=True))
        agents, credits = rest[-2], rest[-1]
        return {
            "totals": counters(totals),
            "by_day": {d: counters(v) for d, v in by_day.items()},
            "by_model": {m: counters(v) for m, v in by_model.items()},
            "agent_runs": {k.decode(): int(v) for k, v in agents.items()},
            "credits": {k.decode(): v.decode() for k, v in credits.items()},
        }
