"""What a job did, told plainly from its stored record: how long each phase took, and one outcome line.

Both are computed from what the store keeps (the phase stamps heartbeat.lua and claim.lua write, the times
finish.lua writes, the runner's result), so the API, the console and the terminal client tell the same story."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kilo_bridge.jobs.record import JobRecord
from kilo_bridge.platform.clock import now_ms


@dataclass(frozen=True, slots=True)
class Phase:
    name: str  # "queued", then the runner's phases (cloning, agent, pushing, uploading, …)
    started_ms: int
    duration_ms: int | None  # None while it is the current phase of a running job


def phases(record: JobRecord, now: int | None = None) -> list[Phase]:
    """The queue wait, then each phase of the last attempt, each until the next began (the last until the job
    ended; a running job's current phase has no duration yet)."""
    now = now or now_ms()
    end = record.finished_ms or None
    out: list[Phase] = []
    first_start = record.phases[0][1] if record.phases else record.started_ms
    queued_until = first_start or end
    out.append(Phase("queued", record.created_ms, queued_until - record.created_ms if queued_until else None))
    for i, (name, start) in enumerate(record.phases):
        nxt = record.phases[i + 1][1] if i + 1 < len(record.phases) else end
        out.append(Phase(name, start, max(0, nxt - start) if nxt else None))
    return out


def duration_ms(record: JobRecord) -> int | None:
    """Created to finished, for a job that has ended."""
    return record.finished_ms - record.created_ms if record.finished_ms and record.created_ms else None


def outcome(record: JobRecord, after: str | None) -> str | None:
    """One plain line saying what came of the run (None while it runs). `after` is the agent's catalogue entry's
    (`pull_request`, `report` or `deploy`; None when the agent is no longer in the catalogue)."""
    if not record.finished:
        return None
    result: dict[str, Any] = record.result or {}
    files = result.get("filesChanged") or []
    if record.status == "succeeded":
        if after == "deploy":
            url = (result.get("deploy") or {}).get("url")
            return f"deployed: {url}" if url else "deployed"
        if result.get("prUrl"):
            return f"pull request opened: {result['prUrl']}"
        if after == "report":
            return "report only: nothing pushed (the summary is the result)"
        if record.dry_run:
            return "dry run: diff kept, nothing pushed" if files else "dry run: no changes"
        if not files:
            return "no changes: nothing pushed"
        if result.get("branch"):
            return f"branch {result['branch']} pushed, no pull request: not a GitHub repository"
        return "succeeded"
    kept = ", diff kept" if files else ""
    if record.status == "cancelled":
        return ("cancelled by its user" if record.reason == "cancelled_by_user" else "cancelled") + kept
    if record.status == "timed_out":
        return f"timed out ({record.reason or 'timeout'}){kept}"
    return f"failed: {record.reason or 'unknown'}{kept}"
