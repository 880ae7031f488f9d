"""Agent job records in Redis: our own record (the queue only carries job ids), its live log, and every
state change as one Lua call (`lua/`) that refuses an illegal move.

A finished job never runs again: `claim` only takes a queued job, or a running one whose heartbeat has
stopped (its worker died) while attempts remain. Finishing deletes the sealed secrets, updates the
counters and sets the record's retention in the same call.

Key families spelled here: `job:<id>` (the record), `job:<id>:env` (sealed profileEnv), `job:<id>:patch` (the
run's diff), `job:<id>:log` (a stream), `job:<id>:logseq` (the last line number each attempt's runner added),
`jobs` (all ids by creation time), `jobs:active`, `jobs:by-key:<digest|open>`, `idem:<owner>:<key>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, cast

import orjson

from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.record import TERMINAL, JobRecord
from kilo_bridge.keys.periods import starts_ms
from kilo_bridge.keys.store import key_record
from kilo_bridge.platform.clock import now_ms
from kilo_bridge.platform.redis import Store, lua
from kilo_bridge.usage.ledger import agent_stats_key

_LUA = Path(__file__).parent / "lua"


def _script(name: str, *, ends_jobs: bool = False) -> str:
    return lua(_LUA, "finish", name) if ends_jobs else lua(_LUA, name)


_CREATE, _DISCARD, _HEARTBEAT, _DISPATCH, _UNDISPATCH, _APPEND_LOG = (
    _script(n) for n in ("create", "discard", "heartbeat", "dispatch", "undispatch", "append_log")
)
_AWAIT_APPROVAL, _DECIDE = _script("await_approval"), _script("decide")
_CLAIM, _END, _CANCEL, _REAP, _FAIL_UNFINISHED, _FAIL_UNDISPATCHED, _RELEASE = (
    _script(n, ends_jobs=True)
    for n in ("claim", "end", "cancel", "reap", "fail_unfinished", "fail_undispatched", "release")
)
IDEMPOTENCY_TTL_S = 86_400


class Created(IntEnum):
    """What `create.lua` answered (its first reply), decoded here so no caller reads its numbers."""

    CREATED = 0  # the job was made: the value is its id
    SEEN = 1  # the same request (Idempotency-Key and body) made it before: the value is that job's id
    OTHER_BODY = 2  # the same Idempotency-Key with another body: the value is the job it made
    TOO_MANY = 3  # the owner's unfinished jobs are at its key's maxJobs: the value is that limit
    OVER_BUDGET = 4  # the owner's budget cannot cover the job's cost cap
    KEY_REVOKED = 5  # the owner's key is revoked


@dataclass(frozen=True, slots=True)
class Claim:
    verdict: str  # ok | busy | done | missing | failed
    attempt: int = 0
    deadline_ms: int = 0


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings

    # -- keys --------------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return self.store.key("job", job_id)

    def log_key(self, job_id: str) -> str:
        return self.store.key("job", job_id, "log")

    def _env_key(self, job_id: str) -> str:
        return self.store.key("job", job_id, "env")

    def _patch_key(self, job_id: str) -> str:
        return self.store.key("job", job_id, "patch")

    def _owner_set(self, owner: str | None) -> str:
        return self.store.key("jobs", "by-key", owner or "open")

    def _idem_key(self, owner: str | None, idempotency_key: str | None) -> str:
        s = self.store
        return s.key("idem", owner or "open", idempotency_key) if idempotency_key else s.key("idem", "none")

    def _end_keys(self, job_id: str, owner: str | None) -> list[str]:
        s = self.store
        return [
            self.job_key(job_id),
            self._env_key(job_id),
            s.key("jobs", "active"),
            self._owner_set(owner),
            agent_stats_key(s),
            self.log_key(job_id),
            key_record(s, owner),
        ]

    def _create_keys(self, job_id: str, owner: str | None, idem_key: str) -> list[str]:
        s = self.store
        return [
            self.job_key(job_id),
            self._env_key(job_id),
            s.key("jobs"),
            s.key("jobs", "active"),
            self._owner_set(owner),
            agent_stats_key(s),
            idem_key,
            key_record(s, owner),
            self._patch_key(job_id),
        ]

    @property
    def _retention_s(self) -> int:
        return self.settings.job_retention_days * 86_400

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self.store.run(source, keys, args)

    # -- API side ----------------------------------------------------------------------------------
    async def create(
        self,
        record: JobRecord,
        sealed_env: str,
        idempotency: tuple[str, str] | None,
        max_jobs: int,
        reserve_nusd: int = 0,
        patch: str = "",
    ) -> tuple[Created, str]:
        """→ what happened (`Created`) and its value: the job's id, or the limit that refused it."""
        keys = self._create_keys(
            record.id, record.owner, self._idem_key(record.owner, idempotency[0] if idempotency else None)
        )
        args = [
            record.id,
            record.created_ms,
            orjson.dumps(record.fields()),
            sealed_env,
            idempotency[1] if idempotency else "",
            IDEMPOTENCY_TTL_S,
            max_jobs,
            reserve_nusd,
            patch,
            self._retention_s,
            *starts_ms(record.created_ms / 1000),
        ]
        code, value = await self._run(_CREATE, keys, args)
        return Created(int(code)), str(value)

    async def discard(self, job_id: str, owner: str | None, idempotency_key: str | None) -> None:
        keys = self._create_keys(job_id, owner, self._idem_key(owner, idempotency_key))
        await self._run(_DISCARD, keys, [job_id])

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self.store.hash(self.job_key(job_id))
        return JobRecord.decode(raw) if raw else None

    async def unfinished(self, owner: str) -> list[JobRecord]:
        """The key's jobs not yet in a final state (queued or running)."""
        ids = sorted(cast(list[str], await self.store.call("SMEMBERS", self._owner_set(owner))))
        return [JobRecord.decode(raw) for raw in await self.store.hashes(self.job_key(i) for i in ids) if raw]

    async def recent(self, limit: int, offset: int = 0) -> list[JobRecord]:
        ids = cast(list[str], await self.store.call("ZREVRANGE", self.store.key("jobs"), offset, offset + limit - 1))
        if not ids:
            return []
        return [JobRecord.decode(raw) for raw in await self.store.hashes(self.job_key(i) for i in ids) if raw]

    async def cancel(self, job_id: str, owner: str | None) -> str:
        return str(await self._run(_CANCEL, self._end_keys(job_id, owner), [job_id, now_ms(), self._retention_s]))

    async def patch(self, job_id: str) -> str | None:
        """The diff the run carries, if any (kept apart from the record: lists never load it)."""
        raw = await self.store.call("GET", self._patch_key(job_id))
        return str(raw) if raw else None

    async def sealed_env(self, job_id: str) -> str | None:
        raw = await self.store.call("GET", self._env_key(job_id))
        return str(raw) if raw else None

    # -- runner side -------------------------------------------------------------------------------
    async def claim(self, job_id: str, owner: str | None, worker: str) -> Claim:
        st = self.settings
        args = [job_id, now_ms(), worker, int(st.job_takeover_s * 1000), st.job_max_attempts, self._retention_s]
        out = await self._run(_CLAIM, self._end_keys(job_id, owner), args)
        verdict = str(out[0])
        if verdict == "ok":
            return Claim(verdict, int(out[1]), int(out[2]))
        return Claim(verdict)

    async def heartbeat(self, job_id: str, attempt: int, phase: str = "", progress: int | None = None) -> str:
        args = [now_ms(), attempt, phase, "" if progress is None else max(0, min(100, progress))]
        return str(await self._run(_HEARTBEAT, [self.job_key(job_id)], args))

    async def await_approval(self, job_id: str, attempt: int, approval: dict[str, Any], expires_ms: int) -> str:
        """The job waits in `awaiting_approval` with what a person approves (→ 'ok' | 'lost')."""
        args = [attempt, now_ms(), orjson.dumps(approval).decode(), expires_ms]
        return str(await self._run(_AWAIT_APPROVAL, [self.job_key(job_id)], args))

    async def decide(self, job_id: str, decision: str) -> str:
        """Approve, reject or (its runner, past the window) expire a deploy, once (lua/decide.lua)."""
        return str(await self._run(_DECIDE, [self.job_key(job_id)], [decision, now_ms()]))

    async def decision(self, job_id: str) -> str | None:
        raw = await self.store.call("HGET", self.job_key(job_id), "decision")
        return str(raw) if raw else None

    async def finish(self, job_id: str, owner: str | None, attempt: int, status: str, fields: dict[str, Any]) -> bool:
        assert status in TERMINAL
        encoded = orjson.dumps({k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in fields.items()})
        args = [job_id, now_ms(), status, encoded, attempt, self._retention_s]
        return bool(await self._run(_END, self._end_keys(job_id, owner), args))

    async def release(self, job_id: str, worker: str, error: str, said: dict[str, bytes]) -> str:
        """The runner `worker` exited without ending its job: 'retry' (the next attempt may claim it now),
        'failed' / 'cancelled' (ended here with `error`), or '' (it had ended, or is not that runner's).
        `said[verdict]` is the log line added in the same step."""
        keys = self._end_keys(job_id, await self._owner(job_id))
        lines = [said[v] for v in ("retry", "failed", "cancelled")]
        cap = self.settings.job_log_max_lines
        args = [job_id, now_ms(), worker, self.settings.job_max_attempts, error, self._retention_s, *lines, cap]
        return str(await self._run(_RELEASE, keys, args))

    async def _owner(self, job_id: str) -> str | None:
        return await self.store.field(self.job_key(job_id), "owner") or None

    async def fail_unfinished(self, job_id: str, reason: EndReason, error: str) -> str:
        """End a job whose runner can no longer end it (its task stopped); '' if it had already ended."""
        keys = self._end_keys(job_id, await self._owner(job_id))
        return str(await self._run(_FAIL_UNFINISHED, keys, [job_id, now_ms(), reason, error, self._retention_s]))

    async def fail_undispatched(self, job_id: str, reason: str, error: str) -> str:
        """End a job that is still queued with no task started: 'failed', '' (started or ended), 'missing'."""
        keys = self._end_keys(job_id, await self._owner(job_id))
        return str(await self._run(_FAIL_UNDISPATCHED, keys, [job_id, now_ms(), reason, error, self._retention_s]))

    async def count_failure_once(self, job_id: str) -> bool:
        """True the first time it is asked of a job (a redelivered task event must not count it twice)."""
        return bool(await self.store.call("HSETNX", self.job_key(job_id), "failureCounted", "1"))

    async def mark_dispatched(self, job_id: str, lease_ms: int) -> int:
        """Take the job's dispatch lease: its mark (> 0), 0 when there is nothing to start (not queued, or the
        task is already started), -1 while another dispatcher's lease is live (less than `lease_ms` old)."""
        return int(await self._run(_DISPATCH, [self.job_key(job_id)], [now_ms(), lease_ms]))

    async def dispatch_token(self, job_id: str) -> int:
        """How many RunTask calls for the job failed for certain: its client token's generation."""
        return int(await self.store.field(self.job_key(job_id), "dispatchToken") or 0)

    async def next_dispatch_token(self, job_id: str) -> int:
        """A RunTask call failed for certain: the next call's token is a new one."""
        return int(await self.store.call("HINCRBY", self.job_key(job_id), "dispatchToken", 1))

    async def set_task_arn(self, job_id: str, arn: str) -> None:
        """The task is started: the lease becomes permanent (a redelivered message starts nothing)."""
        await self.store.call("HSET", self.job_key(job_id), "taskArn", arn)

    async def undispatch(self, job_id: str, mark: int) -> None:
        await self._run(_UNDISPATCH, [self.job_key(job_id)], [mark])

    # -- the reaper --------------------------------------------------------------------------------
    async def reap(self) -> dict[str, str]:
        """Fail what nobody is working on: a lost heartbeat, a passed deadline, a job never picked up."""
        st = self.settings
        moved: dict[str, str] = {}
        for job_id in await self.store.members(self.store.key("jobs", "active")):
            args = [job_id, now_ms(), int(st.job_stale_s * 1000), st.job_queue_max_wait_s * 1000, self._retention_s]
            result = str(await self._run(_REAP, self._end_keys(job_id, await self._owner(job_id)), args))
            if result in TERMINAL:
                moved[job_id] = result
        return moved

    # -- the live log ------------------------------------------------------------------------------
    async def append_log(self, job_id: str, lines: list[bytes]) -> None:
        key, cap = self.log_key(job_id), self.settings.job_log_max_lines
        adds = [("XADD", key, "MAXLEN", "~", cap, "*", "l", line) for line in lines]
        await self.store.pipeline(*adds, ("EXPIRE", key, self._retention_s))

    async def append_log_once(self, job_id: str, attempt: int, first_seq: int, lines: list[bytes]) -> int:
        """The runner's lines numbered `first_seq`… (per attempt): safe to retry, none is added twice."""
        keys = [self.log_key(job_id), self.store.key("job", job_id, "logseq")]
        args = [attempt, first_seq, self.settings.job_log_max_lines, self._retention_s, *lines]
        return int(await self._run(_APPEND_LOG, keys, args))

    async def read_log(
        self, job_id: str, after: str = "0-0", block_ms: int | None = None, count: int = 500
    ) -> list[tuple[str, str]]:
        """Lines (JSON text) after the stream id `after`; waits up to block_ms for new ones when given."""
        if block_ms is None:
            entries = await self.store.stream_after(self.log_key(job_id), after, count)
        else:
            entries = await self.store.stream_wait(self.log_key(job_id), after, count, block_ms)
        return [(eid, fields["l"]) for eid, fields in entries]
