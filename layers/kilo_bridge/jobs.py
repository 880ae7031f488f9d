"""Agent job records in Redis: our own record (the queue only carries job ids), its live log, and every
state change as one Lua call that refuses an illegal move.

    queued → running → succeeded | failed | cancelled | timed_out      (queued → cancelled | failed too)

A finished job never runs again: `claim` only takes a queued job, or a running one whose heartbeat has
stopped (its worker died) while attempts remain. Finishing deletes the sealed secrets, updates the
counters and sets the record's retention in the same call.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from kilo_bridge.store import Store

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
JOB_ID_PREFIX = "job_"
JOB_ID_LEN = len(JOB_ID_PREFIX) + 24


def new_job_id() -> str:
    return JOB_ID_PREFIX + secrets.token_hex(12)


def valid_job_id(value: str) -> bool:
    """Ids are server-made; anything else is simply not found (never a lookup with user text in it)."""
    return (len(value) == JOB_ID_LEN and value.startswith(JOB_ID_PREFIX)
            and all(c in "0123456789abcdef" for c in value[len(JOB_ID_PREFIX):]))


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | str | None) -> str | None:
    if ms in (None, "", "0", 0):
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_entry(source: str, level: str, msg: str) -> dict[str, Any]:
    """One line of a job's log, as the API streams it and `log.jsonl` keeps it."""
    return {"ts": iso(now_ms()), "source": source, "level": level, "msg": msg}


# Shared by every script that ends a job. KEYS: job, env, active, owner set, stats, log, owner's API key.
# A job's budget reservation is settled here: to its reported cost (`costNusd`), to nothing if it never
# ran, or to all of it when it ran and its cost is unknown (a lost worker, a stopped task).
_FINISH_FN = """
local function finish(status, prev, now, fields, retention, id)
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reservedNusd') or '0')
  if reserved > 0 then
    local charge = 0
    if fields.costNusd then charge = tonumber(fields.costNusd) elseif prev == 'running' then charge = reserved end
    redis.call('HINCRBY', KEYS[7], 'reserved_nusd', -reserved)
    if charge > 0 then redis.call('HINCRBY', KEYS[7], 'spend_nusd', charge) end
    redis.call('HDEL', KEYS[1], 'reservedNusd')
  end
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
  redis.call('HSET', KEYS[1], 'status', status, 'finishedMs', now, 'phase', '')
  redis.call('HDEL', KEYS[1], 'dispatchMs')
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], id)
  redis.call('SREM', KEYS[4], id)
  redis.call('HINCRBY', KEYS[5], prev, -1)
  redis.call('HINCRBY', KEYS[5], status, 1)
  redis.call('EXPIRE', KEYS[1], retention)
  redis.call('EXPIRE', KEYS[6], retention)
end
"""

# KEYS: job, env, index, active, owner set, stats, idempotency, owner's API key.
# ARGV: id, now, fields (json), sealed env, idempotency body hash ('' = none), idempotency ttl, max jobs,
#       budget reservation (nano-USD, 0 = none).
# → {0, id} created | {1, id} same request seen before | {2, id} same key, other body | {3, n} too many jobs
#   | {4, id} the key's budget cannot cover the reservation
_CREATE = """
if ARGV[5] ~= '' then
  local prev = redis.call('HMGET', KEYS[7], 'hash', 'job')
  if prev[2] then
    if prev[1] == ARGV[5] then return {1, prev[2]} end
    return {2, prev[2]}
  end
end
local limit = tonumber(ARGV[7])
if limit > 0 then
  local n = redis.call('SCARD', KEYS[5])
  if n >= limit then return {3, tostring(n)} end
end
local reserve = tonumber(ARGV[8])
if reserve > 0 then
  local k = redis.call('HMGET', KEYS[8], 'budget_nusd', 'spend_nusd', 'reserved_nusd')
  local budget = tonumber(k[1] or '0')
  if budget > 0 and tonumber(k[2] or '0') + tonumber(k[3] or '0') + reserve > budget then return {4, ARGV[1]} end
  redis.call('HINCRBY', KEYS[8], 'reserved_nusd', reserve)
  redis.call('HSET', KEYS[1], 'reservedNusd', reserve)
end
local f = cjson.decode(ARGV[3])
for k, v in pairs(f) do redis.call('HSET', KEYS[1], k, v) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4]) end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[6], 'queued', 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[7], 'hash', ARGV[5], 'job', ARGV[1])
  redis.call('EXPIRE', KEYS[7], ARGV[6])
end
return {0, ARGV[1]}
"""

# Undo a create whose enqueue failed: no ghost job (nor its reservation) is left behind. KEYS as _CREATE;
# ARGV: id.
_DISCARD = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reservedNusd') or '0')
if reserved > 0 then redis.call('HINCRBY', KEYS[8], 'reserved_nusd', -reserved) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[6], 'queued', -1)
if redis.call('HGET', KEYS[7], 'job') == ARGV[1] then redis.call('DEL', KEYS[7]) end
return 1
"""

# KEYS: job, env, active, owner set, stats, log. ARGV: id, now, worker, takeover ms, max attempts, retention.
# → {'ok', attempt, deadline} | {'busy'} | {'done', status} | {'missing'} | {'failed'} (attempts used up)
_CLAIM = _FINISH_FN + """
local j = redis.call('HMGET', KEYS[1], 'status', 'heartbeatMs', 'attempt', 'timeoutMs', 'cancelRequested')
if not j[1] then return {'missing'} end
local now = tonumber(ARGV[2])
local attempt
if j[1] == 'queued' then
  attempt = 1
  redis.call('HINCRBY', KEYS[5], 'queued', -1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
  redis.call('HSET', KEYS[1], 'startedMs', now)
elseif j[1] == 'running' then
  if now - tonumber(j[2] or '0') < tonumber(ARGV[4]) then return {'busy'} end
  attempt = tonumber(j[3] or '0') + 1
  if attempt > tonumber(ARGV[5]) or j[5] == '1' then
    local reason = j[5] == '1' and 'cancelled_by_user' or 'worker_lost'
    local status = j[5] == '1' and 'cancelled' or 'failed'
    finish(status, 'running', now, {reason = reason,
      error = 'the worker running this job stopped (attempt ' .. (attempt - 1) .. ')'}, tonumber(ARGV[6]), ARGV[1])
    return {'failed'}
  end
else
  return {'done', j[1]}
end
local deadline = now + tonumber(j[4])
redis.call('HSET', KEYS[1], 'status', 'running', 'phase', 'cloning', 'progress', 0, 'attempt', attempt,
  'worker', ARGV[3], 'heartbeatMs', now, 'deadlineMs', deadline)
return {'ok', attempt, deadline}
"""

# KEYS: job. ARGV: now, attempt, phase ('' = keep), progress ('' = keep). → 'ok' | 'cancel' | 'lost'
_HEARTBEAT = """
local j = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'cancelRequested')
if j[1] ~= 'running' or j[2] ~= ARGV[2] then return 'lost' end
redis.call('HSET', KEYS[1], 'heartbeatMs', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'phase', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[4]) end
if j[3] == '1' then return 'cancel' end
return 'ok'
"""

# KEYS: job, env, active, owner set, stats, log. ARGV: id, now, status, fields (json), attempt, retention.
# → 1 finished | 0 refused (not running, or another attempt owns the job)
_FINISH = _FINISH_FN + """
local j = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if j[1] ~= 'running' or j[2] ~= ARGV[5] then return 0 end
finish(ARGV[3], 'running', tonumber(ARGV[2]), cjson.decode(ARGV[4]), tonumber(ARGV[6]), ARGV[1])
return 1
"""

# KEYS: job, env, active, owner set, stats, log. ARGV: id, now, retention.
# → 'cancelled' (was queued) | 'cancelling' (running: its runner stops it) | the final status | 'missing'
_CANCEL = _FINISH_FN + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'queued' then
  finish('cancelled', 'queued', tonumber(ARGV[2]), {reason = 'cancelled_by_user'}, tonumber(ARGV[3]), ARGV[1])
  return 'cancelled'
end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancelRequested', 1)
  return 'cancelling'
end
return st
"""

# KEYS: job, env, active, owner set, stats, log. ARGV: id, now, stale ms, queue max wait ms, retention.
# → the status the job was moved to, or '' when it is healthy
_REAP = _FINISH_FN + """
local j = redis.call('HMGET', KEYS[1], 'status', 'heartbeatMs', 'deadlineMs', 'createdMs')
local now = tonumber(ARGV[2])
if not j[1] then redis.call('SREM', KEYS[3], ARGV[1]); return 'missing' end
if j[1] == 'running' then
  if now - tonumber(j[2] or '0') > tonumber(ARGV[3]) then
    finish('failed', 'running', now, {reason = 'heartbeat_lost',
      error = 'no heartbeat from the job\\'s worker for ' .. math.floor((now - tonumber(j[2] or '0')) / 1000) .. ' s'},
      tonumber(ARGV[5]), ARGV[1])
    return 'failed'
  end
  if now > tonumber(j[3] or '0') + tonumber(ARGV[3]) then
    finish('timed_out', 'running', now, {reason = 'deadline_passed',
      error = 'the job ran past its deadline'}, tonumber(ARGV[5]), ARGV[1])
    return 'timed_out'
  end
elseif j[1] == 'queued' then
  if now - tonumber(j[4] or '0') > tonumber(ARGV[4]) then
    finish('failed', 'queued', now, {reason = 'never_started', error = 'no worker took the job in time'},
      tonumber(ARGV[5]), ARGV[1])
    return 'failed'
  end
else
  redis.call('SREM', KEYS[3], ARGV[1])
end
return ''
"""

# KEYS: job, env, active, owner set, stats, log. ARGV: id, now, reason, error, retention.
# → the status it had when it was ended here, '' when it had already ended, 'missing'
_FAIL_UNFINISHED = _FINISH_FN + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return '' end
finish('failed', st, tonumber(ARGV[2]), {reason = ARGV[3], error = ARGV[4]}, tonumber(ARGV[5]), ARGV[1])
return st
"""

# KEYS: job. ARGV: now. → 1 (this caller dispatches) | 0 (not queued, or already dispatched)
_DISPATCH = """
local j = redis.call('HMGET', KEYS[1], 'status', 'dispatchMs')
if j[1] ~= 'queued' or j[2] then return 0 end
redis.call('HSET', KEYS[1], 'dispatchMs', ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    verdict: str  # ok | busy | done | missing | failed
    attempt: int = 0
    deadline_ms: int = 0


def _dec(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings

    # -- keys --------------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return self.store.key("job", job_id)

    def log_key(self, job_id: str) -> str:
        return self.store.key("job", job_id, "log")

    def _owner_set(self, owner: str | None) -> str:
        return self.store.key("jobs", "by-key", owner or "open")

    def _end_keys(self, job_id: str, owner: str | None) -> list[str]:
        s = self.store
        return [self.job_key(job_id), s.key("job", job_id, "env"), s.key("jobs", "active"), self._owner_set(owner),
                s.key("stats", "agents"), self.log_key(job_id), s.key("apikey", owner or "-")]

    @property
    def _retention_s(self) -> int:
        return self.settings.job_retention_days * 86_400

    # -- API side ----------------------------------------------------------------------------------
    def _create_keys(self, job_id: str, owner: str | None, idem_key: str) -> list[str]:
        s = self.store
        return [self.job_key(job_id), s.key("job", job_id, "env"), s.key("jobs"), s.key("jobs", "active"),
                self._owner_set(owner), s.key("stats", "agents"), idem_key, s.key("apikey", owner or "-")]

    async def create(self, job_id: str, fields: dict[str, Any], sealed_env: str, owner: str | None,
                     idempotency: tuple[str, str] | None, max_jobs: int, reserve_nusd: int = 0) -> tuple[int, str]:
        s = self.store
        idem_key = s.key("idem", owner or "open", idempotency[0]) if idempotency else s.key("idem", "none")
        keys = self._create_keys(job_id, owner, idem_key)
        args = [job_id, fields["createdMs"], orjson.dumps({k: str(v) for k, v in fields.items()}), sealed_env,
                idempotency[1] if idempotency else "", 86_400, max_jobs, reserve_nusd]
        code, value = await s.script(_CREATE)(keys=keys, args=args)
        return int(code), value.decode() if isinstance(value, bytes) else str(value)

    async def discard(self, job_id: str, owner: str | None, idempotency_key: str | None) -> None:
        s = self.store
        idem_key = s.key("idem", owner or "open", idempotency_key) if idempotency_key else s.key("idem", "none")
        await s.script(_DISCARD)(keys=self._create_keys(job_id, owner, idem_key), args=[job_id])

    async def get(self, job_id: str) -> dict[str, str] | None:
        raw = await self.store.redis.hgetall(self.job_key(job_id))
        return _dec(raw) if raw else None

    async def recent(self, limit: int, offset: int = 0) -> list[dict[str, str]]:
        ids = await self.store.redis.zrevrange(self.store.key("jobs"), offset, offset + limit - 1)
        if not ids:
            return []
        pipe = self.store.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.job_key(job_id.decode()))
        return [_dec(raw) for raw in await pipe.execute() if raw]

    async def cancel(self, job_id: str, owner: str | None) -> str:
        keys = self._end_keys(job_id, owner)
        result = await self.store.script(_CANCEL)(keys=keys, args=[job_id, now_ms(), self._retention_s])
        return result.decode() if isinstance(result, bytes) else str(result)

    async def sealed_env(self, job_id: str) -> str | None:
        raw = await self.store.redis.get(self.store.key("job", job_id, "env"))
        return raw.decode() if raw else None

    # -- runner side -------------------------------------------------------------------------------
    async def claim(self, job_id: str, owner: str | None, worker: str) -> Claim:
        st = self.settings
        args = [job_id, now_ms(), worker, int(st.job_takeover_s * 1000), st.job_max_attempts, self._retention_s]
        out = await self.store.script(_CLAIM)(keys=self._end_keys(job_id, owner), args=args)
        verdict = out[0].decode()
        if verdict == "ok":
            return Claim(verdict, int(out[1]), int(out[2]))
        return Claim(verdict)

    async def heartbeat(self, job_id: str, attempt: int, phase: str = "", progress: int | None = None) -> str:
        args = [now_ms(), attempt, phase, "" if progress is None else max(0, min(100, progress))]
        result = await self.store.script(_HEARTBEAT)(keys=[self.job_key(job_id)], args=args)
        return result.decode()

    async def finish(self, job_id: str, owner: str | None, attempt: int, status: str, fields: dict[str, Any]) -> bool:
        assert status in TERMINAL
        encoded = orjson.dumps({k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in fields.items()})
        args = [job_id, now_ms(), status, encoded, attempt, self._retention_s]
        return bool(await self.store.script(_FINISH)(keys=self._end_keys(job_id, owner), args=args))

    async def fail_unfinished(self, job_id: str, reason: str, error: str) -> str:
        """End a job whose runner can no longer end it (its task stopped); '' if it had already ended."""
        owner = await self.store.redis.hget(self.job_key(job_id), "owner")
        keys = self._end_keys(job_id, owner.decode() if owner else None)
        result = await self.store.script(_FAIL_UNFINISHED)(keys=keys, args=[job_id, now_ms(), reason, error,
                                                                           self._retention_s])
        return result.decode() if isinstance(result, bytes) else str(result)

    async def count_failure_once(self, job_id: str) -> bool:
        """True the first time it is asked of a job (a redelivered task event must not count it twice)."""
        return bool(await self.store.redis.hsetnx(self.job_key(job_id), "failureCounted", "1"))

    async def mark_dispatched(self, job_id: str) -> bool:
        return bool(await self.store.script(_DISPATCH)(keys=[self.job_key(job_id)], args=[now_ms()]))

    async def set_fields(self, job_id: str, **fields: str) -> None:
        await self.store.redis.hset(self.job_key(job_id), mapping=fields)

    async def undispatch(self, job_id: str) -> None:
        await self.store.redis.hdel(self.job_key(job_id), "dispatchMs")

    # -- the reaper --------------------------------------------------------------------------------
    async def reap(self) -> dict[str, str]:
        """Fail what nobody is working on: a lost heartbeat, a passed deadline, a job never picked up."""
        st = self.settings
        moved: dict[str, str] = {}
        members = await self.store.redis.smembers(self.store.key("jobs", "active"))
        for raw_id in members:
            job_id = raw_id.decode()
            owner = await self.store.redis.hget(self.job_key(job_id), "owner")
            args = [job_id, now_ms(), int(st.job_stale_s * 1000), st.job_queue_max_wait_s * 1000, self._retention_s]
            keys = self._end_keys(job_id, owner.decode() if owner else None)
            result = (await self.store.script(_REAP)(keys=keys, args=args)).decode()
            if result in TERMINAL:
                moved[job_id] = result
        return moved

    # -- the live log ------------------------------------------------------------------------------
    async def append_log(self, job_id: str, lines: list[bytes]) -> None:
        pipe = self.store.redis.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(self.log_key(job_id), {"l": line}, maxlen=self.settings.job_log_max_lines, approximate=True)
        pipe.expire(self.log_key(job_id), self._retention_s)
        await pipe.execute()

    async def read_log(self, job_id: str, after: str = "0-0", block_ms: int | None = None,
                       count: int = 500) -> list[tuple[str, bytes]]:
        """Lines after the stream id `after`; waits up to block_ms for new ones when given."""
        if block_ms is None:
            entries = await self.store.redis.xrange(self.log_key(job_id), "(" + after, "+", count=count)
        else:
            reply = await self.store.redis.xread({self.log_key(job_id): after}, count=count, block=block_ms)
            entries = reply[0][1] if reply else []
        return [(eid.decode(), fields[b"l"]) for eid, fields in entries]
