"""A job as our store keeps it: its states, its id, and the stored hash decoded once into a typed record.

queued → running → succeeded | failed | cancelled | timed_out      (queued → cancelled | failed too)
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import orjson

from kilo_bridge.platform.clock import iso, now_ms

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
# What the API and console show: `cancelling` is a running job whose cancel was asked for (its runner is
# killing the agent's process tree; the stored status stays `running` until it ends `cancelled`).
# `awaiting_approval` is a running deploy job whose runner waits for a person's decision (phase
# `awaiting_approval`): nothing is deployed until then.
ShownStatus = Literal[
    "queued", "running", "cancelling", "awaiting_approval", "succeeded", "failed", "cancelled", "timed_out"
]
JobPhase = Literal["", "cloning", "agent", "awaiting_approval", "deploying", "pushing", "uploading"]
# A job's own network policy for its agent: `none` (nothing but the model server) or `allowlist`.
JobNetwork = Literal["none", "allowlist"]
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
JOB_ID_PREFIX = "job_"
JOB_ID_LEN = len(JOB_ID_PREFIX) + 24
JOB_ID_PATTERN = rf"^{JOB_ID_PREFIX}[0-9a-f]{{24}}$"  # what `valid_job_id` takes, for the OpenAPI document


def new_job_id() -> str:
    return JOB_ID_PREFIX + secrets.token_hex(12)


def valid_job_id(value: str) -> bool:
    """Ids are server-made; anything else is simply not found (never a lookup with user text in it)."""
    return (
        len(value) == JOB_ID_LEN
        and value.startswith(JOB_ID_PREFIX)
        and all(c in "0123456789abcdef" for c in value[len(JOB_ID_PREFIX) :])
    )


def log_entry(source: str, level: str, msg: str) -> dict[str, Any]:
    """One line of a job's log, as the API streams it and `log.jsonl` keeps it."""
    return {"ts": iso(now_ms()), "source": source, "level": level, "msg": msg}


def _phases(raw: str | None) -> tuple[tuple[str, int], ...]:
    if not raw:
        return ()
    try:
        # cjson writes whole numbers as they are (14 significant digits: epoch ms fit), or with an exponent
        return tuple((str(name), int(float(ms))) for name, ms in orjson.loads(raw))
    except (ValueError, TypeError):
        return ()


def _setup(raw: str | None) -> tuple[str, ...]:
    try:
        commands = orjson.loads(raw) if raw else []
    except orjson.JSONDecodeError:
        return ()
    return tuple(str(c) for c in commands) if isinstance(commands, list) else ()


def _int(raw: dict[str, str], name: str) -> int:
    return int(raw.get(name) or 0)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """The stored job hash (`job:<id>`), decoded once. Times are epoch milliseconds, 0 when not yet."""

    id: str
    status: JobStatus
    agent: str
    repo_url: str
    timeout_ms: int
    created_ms: int
    phase: JobPhase = ""
    progress: int = 0
    base_branch: str | None = None
    model: str | None = None
    dry_run: bool = False
    max_cost_usd: float | None = None
    prompt: str | None = None
    owner: str | None = None  # the API key's digest; None on an open server
    key_id: str | None = None
    attempt: int = 0
    request_id: str = ""
    started_ms: int = 0
    heartbeat_ms: int = 0
    finished_ms: int = 0
    cancel_requested: bool = False
    reason: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    artifacts: dict[str, int] | None = None  # artifact name → bytes
    # Where a job started from GitHub reports its outcome: `comment:<issue>`, `review:<pull request>` or
    # `review-comment:<pull request>:<comment id>` (a reply in that review comment's thread).
    notify: str | None = None
    # The running attempt's phases as the store stamped them when each began: (phase, epoch ms), in order.
    phases: tuple[tuple[str, int], ...] = ()
    # The job's own network policy (`none` | `allowlist`) over its agent's default; None = the agent's.
    network: JobNetwork | None = None
    # A deploy job's step the runner runs after the agent: {"command": str, "allow": [str, ...]}.
    deploy: dict[str, Any] | None = None
    require_approval: bool = False
    # While awaiting approval: what a person approves (the command, the build's result, the diff) and until when.
    approval: dict[str, Any] | None = None
    decision: str | None = None  # approved | rejected | expired: taken once (lua/decide.lua)
    # A follow-up: the job it continues (its session), and the branch it continues (the one the thread pushed;
    # None: a fresh checkout of the base, and a branch of its own). A job on a pull request's head (a `/kilo`
    # review comment) has the branch without a parent.
    parent_job_id: str | None = None
    branch: str | None = None
    # Its profile's setup commands, run in the sandbox before the agent (bound by the seal like every field).
    setup: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def shown_status(self) -> ShownStatus:
        if self.status == "running" and self.cancel_requested:
            return "cancelling"
        if self.status == "running" and self.phase == "awaiting_approval" and self.decision is None:
            return "awaiting_approval"
        return self.status

    @classmethod
    def decode(cls, raw: dict[str, str]) -> JobRecord:
        status = raw["status"]
        phase = raw.get("phase") or ""
        return cls(
            id=raw["id"],
            status=status if status in STATUSES else "failed",
            agent=raw["agent"],
            repo_url=raw["repoUrl"],
            timeout_ms=_int(raw, "timeoutMs"),
            created_ms=_int(raw, "createdMs"),
            phase=cast(JobPhase, phase) if phase in get_args(JobPhase) else "",
            progress=_int(raw, "progress"),
            base_branch=raw.get("baseBranch") or None,
            model=raw.get("model") or None,
            dry_run=raw.get("dryRun") == "1",
            max_cost_usd=float(raw["maxCostUsd"]) if raw.get("maxCostUsd") else None,
            prompt=raw.get("prompt") or None,
            owner=raw.get("owner") or None,
            key_id=raw.get("keyId") or None,
            attempt=_int(raw, "attempt"),
            request_id=raw.get("requestId", ""),
            started_ms=_int(raw, "startedMs"),
            heartbeat_ms=_int(raw, "heartbeatMs"),
            finished_ms=_int(raw, "finishedMs"),
            cancel_requested=raw.get("cancelRequested") == "1",
            reason=raw.get("reason") or None,
            error=raw.get("error") or None,
            result=orjson.loads(raw["result"]) if raw.get("result") else None,
            artifacts={k: int(v) for k, v in orjson.loads(raw["artifacts"]).items()} if raw.get("artifacts") else None,
            notify=raw.get("notify") or None,
            phases=_phases(raw.get("phases")),
            network=cast(JobNetwork, raw["network"]) if raw.get("network") in get_args(JobNetwork) else None,
            deploy=orjson.loads(raw["deploy"]) if raw.get("deploy") else None,
            require_approval=raw.get("requireApproval") == "1",
            approval=orjson.loads(raw["approval"]) if raw.get("approval") else None,
            decision=raw.get("decision") or None,
            parent_job_id=raw.get("parentJobId") or None,
            branch=raw.get("branch") or None,
            setup=_setup(raw.get("setup")),
        )

    def fields(self) -> dict[str, str]:
        """The hash a new job is created with."""
        # A follow-up's fields only when it is one: every other job's hash (and seal binding) stays as it was.
        follow = {
            "parentJobId": self.parent_job_id,
            "branch": self.branch,
            "setup": orjson.dumps(list(self.setup)).decode() if self.setup else None,
        }
        return (
            {
                "id": self.id,
                "status": self.status,
                "phase": self.phase,
                "progress": str(self.progress),
                "agent": self.agent,
                "repoUrl": self.repo_url,
                "baseBranch": self.base_branch or "",
                "model": self.model or "",
                "dryRun": str(int(self.dry_run)),
                "timeoutMs": str(self.timeout_ms),
                "maxCostUsd": "" if self.max_cost_usd is None else str(self.max_cost_usd),
                "prompt": self.prompt or "",
                "owner": self.owner or "",
                "keyId": self.key_id or "",
                "attempt": str(self.attempt),
                "createdMs": str(self.created_ms),
                "requestId": self.request_id,
                "notify": self.notify or "",
                "network": self.network or "",
            }
            | (  # only deploy jobs carry these (older records' identities stay as they were)
                {"deploy": orjson.dumps(self.deploy).decode(), "requireApproval": str(int(self.require_approval))}
                if self.deploy is not None
                else {}
            )
            | {name: value for name, value in follow.items() if value}
        )


# What a job is, as submitted: every field it is created with (the prompt and the patch by their digests), but
# the ones its runner moves as it runs. A field added to the record later is bound without a change here.
UNBOUND_FIELDS = frozenset({"status", "phase", "progress", "attempt"})


def job_binding(record: JobRecord, patch: str | None) -> bytes:
    """The job's identity as associated data: a digest over its bound fields, its prompt and its patch."""
    identity = {name: value for name, value in record.fields().items() if name not in UNBOUND_FIELDS}
    identity["prompt"] = hashlib.sha256((record.prompt or "").encode()).hexdigest()
    identity["patch"] = hashlib.sha256((patch or "").encode()).hexdigest()
    return b"job-v1:" + hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest().encode()
