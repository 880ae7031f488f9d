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
`settled:<admission id>`; `owners` (web process id → its last sign of life, ms) and `inflight:<process id>` ("<key
digest>:<admission id>" → deadline): the reservations each process holds, so that one it gave up on, or one of a
process that died, is released within RESERVATION_OWNER_TIMEOUT_S instead of at its deadline.

Time comes from `Ledger.clock` (epoch seconds; `time.time` unless the composition root or a test sets another):
budget periods and rate limits are decided on it, so a test moves the clock instead of waiting for midnight.

Both scripts are idempotent per admission id (a server-made id, never the client's), so the hot connection may
send one again when a reply was lost (platform/resp.py); and every reservation has a deadline
(`hold_s`: the longest a call may run, plus a margin), so one whose settlement never comes is released.

A settlement Redis refuses is written to a local spool (usage/spool.py) and replayed when Redis answers, by this
process or the next one (`settle`, `replay`): a billed call is never lost to a Redis outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from kilo_bridge import metrics
from kilo_bridge.errors import BridgeError
from kilo_bridge.keys.periods import starts_ms
from kilo_bridge.keys.store import InvalidKey, KeyStore, key_id, key_record, team_record
from kilo_bridge.money import nusd, usd
from kilo_bridge.platform.redis import Store, StoreUnavailable, lua
from kilo_bridge.platform.resp import RedisConnectionError, RedisError, ResponseError, Script
from kilo_bridge.usage.spool import Spool

DAY_TTL_S = 40 * 86_400  # per-day counters are kept a little over a month
COUNTER_FIELDS = ("requests", "ok", "failed", "streams", "prompt_tokens", "completion_tokens", "unpriced")
_LUA = Path(__file__).parent / "lua"
_ADMIT, _RECORD = Script(lua(_LUA, "admit")), Script(lua(_LUA, "record"))
_RELEASE = lua(_LUA, "release")
_SCRIPTS = {"record": _RECORD}  # what a spool entry may replay
RECORD_ATTEMPTS = 5  # without a spool: tries of a settlement before it is logged as lost
log = logging.getLogger(__name__)


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
    owner: str = ""  # the process that holds the reservation (its `inflight:` set)


class Verdict(IntEnum):
    """What `admit.lua` answered (its first reply), decoded here: callers see `Admission` or an exception."""

    ADMITTED = 0  # then the periods' starts the reservation was counted in
    UNKNOWN_KEY = 401  # unknown or revoked
    OVER_BUDGET = 402  # the key's own budget, or (a second reply, 'team') its team's
    MODEL_NOT_ALLOWED = 403  # the model is not in the key's models list
    TEAM_MOVED = 409  # the key is in another team than the one asked for: its second reply names it
    RATE_LIMITED = 429  # its second reply: the seconds until the window ends


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
Command = tuple[Any, ...]


class Ledger:
    def __init__(
        self,
        store: Store,
        hold_s: float = 1_000.0,
        clock: Callable[[], float] = time.time,
        spool_dir: str | Path | None = None,
        owner_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.hold_ms = int(hold_s * 1000)
        self.clock = clock
        self.spool = Spool(spool_dir) if spool_dir else None
        # This process's reservations are in `inflight:<owner>`; it shows life every third of the timeout.
        self.owner = uuid.uuid4().hex[:16]
        self.owner_timeout_ms = int(owner_timeout_s * 1000)
        self._live: set[str] = set()  # admission ids admitted (or being admitted) and not yet settled
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Since when this process's signs of life have all reached Redis (None: the last one failed). It judges
        # others dead only after a whole owner timeout of its own: after a Redis outage every process looks silent.
        self._alive_since: float | None = None
        # Key digest -> its team, as last seen: admission names the team's record up front (a script's keys are
        # its arguments) and the script checks it; a stale guess costs one more round trip, never a wrong verdict.
        self._teams: dict[str, str] = {}

    def _inflight(self, owner: str) -> str:
        return self.store.key("inflight", owner)

    async def _hot(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        after: list[Command],
        before: Sequence[Command] = (),
    ) -> Any:
        """A ledger script with the commands `before` and `after` it in one write on the hot connection (one round
        trip); the script's reply. Sent once more on a connection found lost, and as EVAL after a Redis restart
        (NOSCRIPT). (Not a transaction: a Redis killed mid-write may run the first commands only, so what must not
        be missing if the script ran goes `before` it.)"""
        if not after and not before:
            return await self.store.hot.evalsha(script, keys, args)
        at = len(before)
        for attempt in (0, 1):
            try:
                call = ("EVALSHA", script.sha, len(keys), *keys, *args)
                return (await self.store.hot.pipeline([*before, call, *after]))[at]
            except ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                call = ("EVAL", script.source, len(keys), *keys, *args)
                return (await self.store.hot.pipeline([*before, call, *after]))[at]
            except RedisConnectionError:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

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
        # A keyed admission is noted in this process's in-flight set in the same write (no extra round trip), before
        # it: a reservation made is always one this process is known to hold.
        extra: list[Command] = []
        if key_digest is not None:
            self._live.add(admission_id)
            member = f"{key_digest}:{admission_id}"
            extra.append(("ZADD", self._inflight(self.owner), int(now * 1000) + self.hold_ms, member))
            extra.append(("ZADD", s.key("owners"), int(now * 1000), self.owner))  # a sign of life with it
        for _ in range(3):  # a key moved to another team since we last saw it: ask again with that team
            try:  # (what `guard` does, inline: this is every request's path)
                verdict = await self._hot(_ADMIT, [*keys, team_record(s, team)], [*args, team], [], before=extra)
            except (RedisError, OSError) as exc:
                # Redis may still run it (a timeout, not a refusal): the next sweep releases what it reserved.
                self._live.discard(admission_id)
                self._poke()
                raise StoreUnavailable() from exc
            if Verdict(int(verdict[0])) is not Verdict.TEAM_MOVED or not key_digest:
                break
            if len(self._teams) >= TEAM_CACHE_MAX:
                self._teams.clear()
            team = self._teams[key_digest] = _text(verdict[1])
        status = Verdict(int(verdict[0]))
        if status is Verdict.ADMITTED:
            reserved = estimate_nusd if key_digest else 0
            owner = self.owner if key_digest else ""
            return Admission(key_digest, reserved, admission_id, _text(verdict[1]), team, _text(verdict[2]), owner)
        self._live.discard(admission_id)
        error: BridgeError
        if status is Verdict.UNKNOWN_KEY:
            error = InvalidKey()
        elif status is Verdict.OVER_BUDGET and len(verdict) > 1:
            error = BudgetExceeded("This API key's team budget cannot cover the request; ask an operator.")
        elif status is Verdict.OVER_BUDGET:
            error = BudgetExceeded("This API key's budget cannot cover the request; ask an operator to raise it.")
        elif status is Verdict.MODEL_NOT_ALLOWED:
            error = ModelNotAllowed(f"This API key may not use the model {model!r} (its models list).")
        else:
            error = RateLimited("This API key's per-minute limit is reached.", retry_after=int(verdict[1]))
        metrics.refused(error.code)
        raise error

    async def record(self, outcome: Outcome, cost_nusd: int | None, admission: Admission | None = None) -> None:
        """Accounting round trip: counters for totals, the day, the model and the key; the key's
        reservation settled to the real cost; credit spend. Raises StoreUnavailable (see `settle`)."""
        admission = admission or Admission()
        keys, args, extra = self._record_call(outcome, cost_nusd, admission)
        try:
            counted = await self._hot(_RECORD, keys, args, extra)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        self._counted(counted, outcome, cost_nusd, admission)

    def _counted(self, counted: Any, outcome: Outcome, cost_nusd: int | None, admission: Admission) -> None:
        self._live.discard(admission.id)
        if counted == 1:  # (0: a repeat of a settlement already counted)
            tokens = max(0, int(outcome.prompt_tokens)), max(0, int(outcome.completion_tokens))
            metrics.settled(outcome.model, outcome.ok, max(0, cost_nusd or 0), *tokens)

    async def settle(self, outcome: Outcome, cost_nusd: int | None, admission: Admission | None = None) -> bool:
        """`record`, never raising: what Redis refuses goes to the spool (replayed when Redis answers, by this
        process or the next) — or, without a spool, is tried a few more times and then logged as lost. True when
        written now."""
        admission = admission or Admission()
        keys, args, extra = self._record_call(outcome, cost_nusd, admission)
        try:
            self._counted(await self._hot(_RECORD, keys, args, extra), outcome, cost_nusd, admission)
            return True
        except (RedisError, OSError):
            pass
        if self.spool is not None:
            entry = {"script": "record", "keys": keys, "args": args, "extra": extra, "admission": admission.id}
            try:
                await asyncio.to_thread(self.spool.put, entry)
                self._live.discard(admission.id)
                self._poke()
                return False
            except OSError:
                log.exception("settlement spool refused a record")
        for attempt in range(1, RECORD_ATTEMPTS):
            await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                self._counted(await self._hot(_RECORD, keys, args, extra), outcome, cost_nusd, admission)
                return True
            except (RedisError, OSError):
                pass
        log.error("accounting lost", extra={"outcome": repr(outcome), "cost_nusd": cost_nusd})
        return False

    def _record_call(
        self, outcome: Outcome, cost_nusd: int | None, admission: Admission
    ) -> tuple[list[str], list[Any], list[Command]]:
        """The record script's keys and arguments, and the in-flight set's update sent with it: all a spool entry
        needs to replay it exactly (the day and time it happened included)."""
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
        extra: list[Command] = []
        if admission.owner and admission.key_digest:
            extra.append(("ZREM", self._inflight(admission.owner), f"{admission.key_digest}:{admission.id}"))
        return keys, args, extra

    # -- the background: spool replay, signs of life, reservations nobody will settle -------------
    def start(self) -> None:
        """Start the background task (the app's start): replays what a predecessor left in the spool, shows this
        process's life, releases the reservations of processes that died."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._background())

    def _poke(self) -> None:
        """Something to do soon (a spooled record, an admission that may have to be released)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.start()
        assert self._wake is not None
        self._wake.set()

    async def _background(self) -> None:
        beat_s = self.owner_timeout_ms / 3000
        while True:
            assert self._wake is not None
            self._wake.clear()
            pending = False
            try:
                await self.replay()
                await self.beat()
            except (RedisError, OSError, StoreUnavailable):
                pending = True  # Redis still away: try again soon
            except Exception:  # keep going: a bug here must not stop the replay for good
                log.exception("ledger background step failed")
            wait_s = min(beat_s, 1.0) if pending else beat_s
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
                await asyncio.sleep(0.2)  # a burst of pokes is one step
            except TimeoutError:
                pass

    async def replay(self) -> int:
        """Write what the spool holds (idempotent: each admission counts once); returns how many it wrote.
        Raises while Redis does not answer (what is left stays for the next try)."""
        if self.spool is None:
            return 0
        written = 0
        for path in await asyncio.to_thread(self.spool.paths):
            entry = Spool.read(path)
            if entry is None:
                continue
            script = _SCRIPTS.get(str(entry.get("script")))
            if script is not None:
                extra = [tuple(c) for c in entry.get("extra") or ()]
                await self._hot(script, list(entry["keys"]), list(entry["args"]), extra)
                written += 1
            Spool.remove(path)
        return written

    async def beat(self) -> None:
        """This process's sign of life, and the releases nobody else will make: reservations of its own it no
        longer waits for (an admission it gave up on that Redis ran anyway), and those of processes silent for
        longer than the owner timeout (killed)."""
        s = self.store
        now_ms = int(time.time() * 1000)
        mine, owners = self._inflight(self.owner), s.key("owners")
        try:
            replies = await self._beat(now_ms, mine, owners)
        except BaseException:
            self._alive_since = None
            raise
        if self._alive_since is None:
            self._alive_since = time.monotonic()
        await self._release(mine, [m for m in replies[2] if m.rsplit(":", 1)[-1] not in self._live])
        if time.monotonic() - self._alive_since < self.owner_timeout_ms / 1000:
            return  # every other process has had a whole timeout to show life since Redis answers again
        for dead in replies[4]:
            if dead == self.owner:
                continue
            theirs = self._inflight(dead)
            await self._release(theirs, await s.call("ZRANGE", theirs, 0, -1))
            await s.pipeline(("DEL", theirs), ("ZREM", owners, dead))
            log.warning("released the reservations of a process that stopped", extra={"owner": dead})

    async def _beat(self, now_ms: int, mine: str, owners: str) -> list[Any]:
        return await self.store.pipeline(
            ("ZADD", owners, now_ms, self.owner),
            ("PEXPIRE", owners, max(self.hold_ms * 2, self.owner_timeout_ms * 4)),
            ("ZRANGE", mine, 0, -1),
            ("PEXPIRE", mine, self.hold_ms * 2),
            ("ZRANGEBYSCORE", owners, "-inf", now_ms - self.owner_timeout_ms, "LIMIT", 0, 20),
        )

    async def _release(self, inflight: str, members: list[str]) -> None:
        s = self.store
        for member in members:
            key_digest, _, admission_id = member.rpartition(":")
            held, amounts, periods = self._held(key_digest)
            tag = await s.call("HGET", periods, admission_id + ":t")  # 'team|its period' when a team holds it too
            team = tag.split("|", 1)[0] if tag else ""
            keys = [key_record(s, key_digest), held, amounts, s.key("settled", admission_id), periods]
            await s.run(_RELEASE, [*keys, team_record(s, team)], [admission_id, team])
        if members:
            await s.call("ZREM", inflight, *members)

    async def close(self, drain_s: float = 2.0) -> None:
        """Stop the background task; what the spool still holds after one more try (bounded) stays on disk for
        the next process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.spool is not None and len(self.spool):
            try:
                async with asyncio.timeout(drain_s):
                    await self.replay()
            except (TimeoutError, RedisError, OSError, StoreUnavailable):
                log.warning("settlements kept on disk for the next start", extra={"entries": len(self.spool)})

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
