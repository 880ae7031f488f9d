"""The usage ledger: what every generation is admitted against and what it cost, plus credits and stats.

Each generate request costs two round trips: admission before the upstream call (API key, rate limits
and budget reservation; it also proves Redis is reachable, so spend is never made that cannot be
counted) and accounting after it. Both are single Lua calls (`lua/`): atomic, exact under concurrency,
no read-modify-write in Python.

Money is integer nano-USD (money.py).

Key families spelled here: `stats`, `stats:day:<date>`, `stats:model:<id>`, `stats:models`, `stats:agents`,
`credits`, the per-minute windows `rl:<key>:<minute>` / `tl:<key>:<minute>`, a key's held reservations
`held:<key>` (admission id → deadline) and `held:<key>:nusd` (admission id → amount), and `settled:<admission id>`.

Both scripts are idempotent per admission id (a server-made id, never the client's), so the hot connection may
send one again when a reply was lost (platform/resp.py); and every reservation has a deadline
(`hold_s`: the longest a call may run, plus a margin), so one whose settlement never comes is released.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from kilo_bridge.errors import BridgeError
from kilo_bridge.keys.store import InvalidKey, KeyStore, key_id, key_record
from kilo_bridge.money import nusd, usd
from kilo_bridge.platform.redis import Store, StoreUnavailable, lua
from kilo_bridge.platform.resp import RedisError, Script

DAY_TTL_S = 40 * 86_400  # per-day counters are kept a little over a month
COUNTER_FIELDS = ("requests", "ok", "failed", "streams", "prompt_tokens", "completion_tokens", "unpriced")
_LUA = Path(__file__).parent / "lua"
_ADMIT, _RECORD = Script(lua(_LUA, "admit")), Script(lua(_LUA, "record"))


@dataclass(slots=True, frozen=True)
class Outcome:
    """What one gateway call cost, as recorded by `Ledger.record`."""

    model: str
    ok: bool
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    credits_exhausted: bool = False
    # The cost is unknown (no price, no usage) though the upstream answered: charge the key its reservation.
    charge_reservation: bool = False
    error_code: str = ""  # why a failed call failed, kept on the key (a job's runner shows it)


@dataclass(slots=True, frozen=True)
class Admission:
    """A request let through: whose key (digest), what it reserved of that key's budget, and its id."""

    key_digest: str | None = None
    reserved_nusd: int = 0
    id: str = ""


class Verdict(IntEnum):
    """What `admit.lua` answered (its first reply), decoded here: callers see `Admission` or an exception."""

    ADMITTED = 0
    UNKNOWN_KEY = 401  # unknown or revoked
    OVER_BUDGET = 402
    RATE_LIMITED = 429  # its second reply: the seconds until the window ends


class BudgetExceeded(BridgeError, code="budget_exceeded"):
    """The key's budget cannot cover what the call or job might cost."""


class RateLimited(BridgeError, code="rate_limited"):
    """The key's requests or tokens per minute are used up; `retry_after` says until when."""


# (epoch day, its date) of the last call: formatting a date per request showed up in the profile (docs/benchmarks.md)
_DAY: list[Any] = [-1, ""]


def today(now: dt.datetime | None = None) -> str:
    if now is not None:
        return now.strftime("%Y-%m-%d")
    day = int(time.time() // 86_400)
    if day != _DAY[0]:
        _DAY[:] = [day, dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime("%Y-%m-%d")]
    return str(_DAY[1])


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def counters(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {f: int(raw.get(f, 0)) for f in COUNTER_FIELDS}
    out["spend_usd"] = usd(int(raw.get("spend_nusd", 0)))
    return out


def agent_stats_key(store: Store) -> str:
    """Job counts by status (written by the jobs package's scripts, read in `stats_raw`)."""
    return store.key("stats", "agents")


class Ledger:
    def __init__(self, store: Store, hold_s: float = 1_000.0) -> None:
        self.store = store
        self.hold_ms = int(hold_s * 1000)

    def _held(self, key_digest: str | None) -> tuple[str, str]:
        key = self.store.key
        return key("held", key_digest or "-"), key("held", key_digest or "-", "nusd")

    def _windows(self, key_digest: str, now: float) -> tuple[str, str, int]:
        minute = str(int(now // 60))
        key = self.store.key
        return key("rl", key_digest, minute), key("tl", key_digest, minute), 60 - int(now % 60)

    async def admit(self, key_digest: str | None = None, estimate_nusd: int = 0) -> Admission:
        """Admission round trip: the key's validity, rate limits and budget (reserving `estimate_nusd`),
        and the request counted. Fails closed if Redis is down, before any upstream call."""
        now = time.time()
        s = self.store
        rpm_key, tpm_key, retry_after = self._windows(key_digest or "-", now)
        admission_id = uuid.uuid4().hex
        keys = [s.key("stats"), s.key("stats", "day", today()), key_record(s, key_digest), rpm_key, tpm_key]
        keys += self._held(key_digest)
        args: list[Any] = [DAY_TTL_S, int(key_digest is not None), estimate_nusd, retry_after]
        args += [admission_id, int(now * 1000), self.hold_ms]
        try:  # (what `guard` does, inline: this is every request's path)
            verdict = await s.hot.evalsha(_ADMIT, keys, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        match Verdict(int(verdict[0])):
            case Verdict.UNKNOWN_KEY:
                raise InvalidKey()
            case Verdict.OVER_BUDGET:
                raise BudgetExceeded("This API key's budget cannot cover the request; ask an operator to raise it.")
            case Verdict.RATE_LIMITED:
                raise RateLimited("This API key's per-minute limit is reached.", retry_after=int(verdict[1]))
        return Admission(key_digest, estimate_nusd if key_digest else 0, admission_id)

    async def record(self, outcome: Outcome, cost_nusd: int | None, admission: Admission | None = None) -> None:
        """Accounting round trip: counters for totals, the day, the model and the key; the key's
        reservation settled to the real cost; credit spend."""
        admission = admission or Admission()
        s = self.store
        _, tpm_key, _ = self._windows(admission.key_digest or "-", time.time())
        keys = [
            s.key("stats"),
            s.key("stats", "day", today()),
            s.key("stats", "model", outcome.model),
            s.key("stats", "models"),
            s.key("credits"),
            key_record(s, admission.key_digest),
            tpm_key,
            *self._held(admission.key_digest),
            s.key("settled", admission.id or uuid.uuid4().hex),  # no id (a bare record): nothing to repeat
        ]
        if cost_nusd is not None:
            key_charge = max(0, cost_nusd)
        else:
            key_charge = admission.reserved_nusd if outcome.charge_reservation else 0
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
            now_iso(),
            int(admission.key_digest is not None),
            admission.reserved_nusd,
            key_charge,
            admission.id,
            self.hold_ms,
            outcome.error_code if not outcome.ok else "",
        ]
        try:
            await s.hot.evalsha(_RECORD, keys, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc

    # -- credits -----------------------------------------------------------------------------------
    async def set_balance(self, balance_usd: float, source: str) -> None:
        """A fresh balance read resets the spend counted since the previous one."""
        async with self.store.guard():
            await self.store.set_fields(
                self.store.key("credits"),
                {
                    "balance_nusd": nusd(balance_usd),
                    "seen_at": now_iso(),
                    "spent_since_nusd": 0,
                    "source": source,
                    "last_error": "",
                },
            )

    async def set_credit_error(self, message: str) -> None:
        async with self.store.guard():
            await self.store.call("HSET", self.store.key("credits"), "last_error", message[:300])

    async def credits_raw(self) -> dict[str, str]:
        async with self.store.guard():
            return await self.store.hash(self.store.key("credits"))

    async def by_key(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Counters per key (`name:id`), for every key or only the one with digest `only`."""
        records = await KeyStore(self.store).records(only)
        return {f"{raw.get('name', '')}:{key_id(d)}": counters(raw) for d, raw in records.items()}

    # -- stats -------------------------------------------------------------------------------------
    async def stats_raw(self, days: int = 7) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        day_names = [today(now - dt.timedelta(days=i)) for i in range(days)]
        s = self.store
        async with s.guard():
            models = sorted(await s.members(s.key("stats", "models")))
            results = await s.hashes(
                [
                    s.key("stats"),
                    *(s.key("stats", "day", d) for d in day_names),
                    *(s.key("stats", "model", m) for m in models),
                    agent_stats_key(s),
                    s.key("credits"),
                ]
            )
        totals, rest = results[0], results[1:]
        by_day = dict(zip(day_names, rest[:days], strict=True))
        by_model = dict(zip(models, rest[days : days + len(models)], strict=True))
        agents, credits = rest[-2], rest[-1]
        return {
            "totals": counters(totals),
            "by_day": {d: counters(v) for d, v in by_day.items()},
            "by_model": {m: counters(v) for m, v in by_model.items()},
            "agent_runs": {k: int(v) for k, v in agents.items()},
            "credits": dict(credits),
        }
