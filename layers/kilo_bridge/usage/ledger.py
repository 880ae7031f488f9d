"""The usage ledger: what every generation is admitted against and what it cost, plus credits and stats.

Each generate request costs two round trips: admission before the upstream call (API key, rate limits
and budget reservation; it also proves Redis is reachable, so spend is never made that cannot be
counted) and accounting after it. Both are single Lua calls (`lua/`): atomic, exact under concurrency,
no read-modify-write in Python.

Money is integer nano-USD (money.py).

Key families spelled here: `stats`, `stats:day:<date>`, `stats:model:<id>`, `stats:models`, `stats:agents`,
`credits`, the rate limits `rl:<key>` (the last minute's admissions: id → epoch ms) and `tl:<key>` (tokens per
minute: when the key's GCRA bucket is full again), a key's held reservations `held:<key>` (admission id →
deadline), `held:<key>:nusd` (admission id → amount) and `held:<key>:period` (admission id → the budget period it
counts in), `usage:<key>:<date>` (the key's requests, tokens and spend by model that day) and
`settled:<admission id>`.

Time comes from `Ledger.clock` (epoch seconds; `time.time` unless the composition root or a test sets another):
budget periods and rate limits are decided on it, so a test moves the clock instead of waiting for midnight.

Both scripts are idempotent per admission id (a server-made id, never the client's), so the hot connection may
send one again when a reply was lost (platform/resp.py); and every reservation has a deadline
(`hold_s`: the longest a call may run, plus a margin), so one whose settlement never comes is released.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kilo_bridge import metrics
from kilo_bridge.errors import BridgeError
from kilo_bridge.keys.periods import starts_ms
from kilo_bridge.keys.store import InvalidKey, KeyStore, key_id, key_record, team_record
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
    period: str = ""  # the start (epoch ms) of the budget period it counts in; '' for a lifetime budget
    team: str = ""  # the key's team when admitted ('' none): its budget was checked and holds the reservation too
    team_period: str = ""


class BudgetExceeded(BridgeError, code="budget_exceeded"):
    """The key's budget cannot cover what the call or job might cost."""


class RateLimited(BridgeError, code="rate_limited"):
    """The key's requests or tokens per minute are used up; `retry_after` says until when."""


class ModelNotAllowed(BridgeError, code="model_not_allowed"):
    """The key's `models` list does not include the model asked for."""


# (epoch day, its date) of the last call: formatting a date per request showed up in the profile (docs/benchmarks.md)
_DAY: list[Any] = [-1, ""]


def today(now: dt.datetime | None = None, now_s: float | None = None) -> str:
    if now is not None:
        return now.strftime("%Y-%m-%d")
    day = int((time.time() if now_s is None else now_s) // 86_400)
    if day != _DAY[0]:
        _DAY[:] = [day, dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime("%Y-%m-%d")]
    return str(_DAY[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def counters(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {f: int(raw.get(f, 0)) for f in COUNTER_FIELDS}
    out["spend_usd"] = usd(int(raw.get("spend_nusd", 0)))
    return out


def agent_stats_key(store: Store) -> str:
    """Job counts by status (written by the jobs package's scripts, read in `stats_raw`)."""
    return store.key("stats", "agents")


TEAM_CACHE_MAX = 10_000


class Ledger:
    def __init__(self, store: Store, hold_s: float = 1_000.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.hold_ms = int(hold_s * 1000)
        self.clock = clock
        # Key digest -> its team, as last seen: admission names the team's record up front (a script's keys are
        # its arguments) and the script checks it; a stale guess costs one more round trip, never a wrong verdict.
        self._teams: dict[str, str] = {}

    def _held(self, key_digest: str | None) -> tuple[str, str, str]:
        key, k = self.store.key, key_digest or "-"
        return key("held", k), key("held", k, "nusd"), key("held", k, "period")

    def _limits(self, key_digest: str | None) -> tuple[str, str]:
        key, k = self.store.key, key_digest or "-"
        return key("rl", k), key("tl", k)

    def key_day(self, key_digest: str | None, day: str) -> str:
        """The key's requests, tokens and spend by model on `day` (fields `<model>|requests` etc.)."""
        return self.store.key("usage", key_digest or "-", day)

    async def admit(self, key_digest: str | None = None, estimate_nusd: int = 0, model: str = "") -> Admission:
        """Admission round trip: the key's validity, its model list, rate limits and budget (reserving
        `estimate_nusd` in the key's current budget period), and the request counted. Fails closed if Redis is
        down, before any upstream call."""
        now = self.clock()
        s = self.store
        admission_id = uuid.uuid4().hex
        keys = [s.key("stats"), s.key("stats", "day", today(now_s=now)), key_record(s, key_digest)]
        keys += self._limits(key_digest)
        keys += self._held(key_digest)
        args: list[Any] = [DAY_TTL_S, int(key_digest is not None), estimate_nusd, model]
        args += [admission_id, int(now * 1000), self.hold_ms, *starts_ms(now)]
        team = self._teams.get(key_digest, "") if key_digest else ""
        for _ in range(3):  # a key moved to another team since we last saw it: ask again with that team
            try:  # (what `guard` does, inline: this is every request's path)
                verdict = await s.hot.evalsha(_ADMIT, [*keys, team_record(s, team)], [*args, team])
            except (RedisError, OSError) as exc:
                raise StoreUnavailable() from exc
            if int(verdict[0]) != 409 or not key_digest:
                break
            if len(self._teams) >= TEAM_CACHE_MAX:
                self._teams.clear()
            team = self._teams[key_digest] = _text(verdict[1])
        status = int(verdict[0])
        if status == 0:
            reserved = estimate_nusd if key_digest else 0
            return Admission(key_digest, reserved, admission_id, _text(verdict[1]), team, _text(verdict[2]))
        error: BridgeError
        if status == 401:
            error = InvalidKey()
        elif status == 402 and len(verdict) > 1:
            error = BudgetExceeded("This API key's team budget cannot cover the request; ask an operator.")
        elif status == 402:
            error = BudgetExceeded("This API key's budget cannot cover the request; ask an operator to raise it.")
        elif status == 403:
            error = ModelNotAllowed(f"This API key may not use the model {model!r} (its models list).")
        else:
            error = RateLimited("This API key's per-minute limit is reached.", retry_after=int(verdict[1]))
        metrics.refused(error.code)
        raise error

    async def record(self, outcome: Outcome, cost_nusd: int | None, admission: Admission | None = None) -> None:
        """Accounting round trip: counters for totals, the day, the model and the key; the key's
        reservation settled to the real cost; credit spend."""
        admission = admission or Admission()
        s = self.store
        now = self.clock()
        day = today(now_s=now)
        keys = [
            s.key("stats"),
            s.key("stats", "day", day),
            s.key("stats", "model", outcome.model),
            s.key("stats", "models"),
            s.key("credits"),
            key_record(s, admission.key_digest),
            self._limits(admission.key_digest)[1],
            *self._held(admission.key_digest)[:2],
            s.key("settled", admission.id or uuid.uuid4().hex),  # no id (a bare record): nothing to repeat
            self._held(admission.key_digest)[2],
            self.key_day(admission.key_digest, day),
            team_record(s, admission.team),
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
            int(now * 1000),
            admission.period,
            admission.team,
            admission.team_period,
        ]
        try:
            counted = await s.hot.evalsha(_RECORD, keys, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        if counted == 1:  # (0: a repeat of a settlement already counted)
            tokens = max(0, int(outcome.prompt_tokens)), max(0, int(outcome.completion_tokens))
            metrics.settled(outcome.model, outcome.ok, max(0, cost_nusd or 0), *tokens)

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

    async def by_team(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Counters per team: the sums of its keys' (jobs' own keys included while they last), for every team or
        only the team of the key with digest `only`."""
        records = await KeyStore(self.store).records()
        team = records.get(only, {}).get("team") if only is not None else None
        out: dict[str, dict[str, Any]] = {}
        for raw in records.values():
            name = raw.get("team")
            if not name or (only is not None and name != team):
                continue
            sums = out.setdefault(name, {f: 0 for f in COUNTER_FIELDS} | {"spend_nusd": 0})
            for f in (*COUNTER_FIELDS, "spend_nusd"):
                sums[f] += int(raw.get(f, 0))
        return {name: counters({k: str(v) for k, v in sums.items()}) for name, sums in out.items()}

    async def key_usage(self, key_digest: str, days: int = 7) -> tuple[dict[str, dict[str, dict[str, int]]], int]:
        """One key's figures by day and model for the last `days` UTC days (newest first; `requests`, `tokens`,
        `spend_nusd`), and how many of its calls are admitted and not yet settled."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        day_names = [today(now - dt.timedelta(days=i)) for i in range(days)]
        s = self.store
        async with s.guard():
            raws = await s.hashes(self.key_day(key_digest, d) for d in day_names)
            open_calls = int(await s.call("ZCARD", self._held(key_digest)[0]) or 0)
        by_day: dict[str, dict[str, dict[str, int]]] = {}
        for day, raw in zip(day_names, raws, strict=True):
            models: dict[str, dict[str, int]] = {}
            for field, value in raw.items():
                model, _, figure = field.rpartition("|")
                models.setdefault(model, {"requests": 0, "tokens": 0, "spend_nusd": 0})[figure] = int(value)
            by_day[day] = models
        return by_day, open_calls

    # -- stats -------------------------------------------------------------------------------------
    async def stats_raw(self, days: int = 7) -> dict[str, Any]:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
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
