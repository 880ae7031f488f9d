"""What every stage of one job shares: the job's record and claim, its live log and redaction, the stop signal
(cancel, lost, budget, deadline), the heartbeat, and the account of what the agent did so far (kept when a
stage ends the job early: a stopped agent's partial work is part of the audit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent_task import procs
from agent_task.joblog import JobLog
from agent_task.kilo import AgentProgress
from kilo_bridge.config import Settings
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.record import JobRecord
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.keys.store import JobKeyUsage
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.redis import REDIS_DOWN
from kilo_bridge.platform.security import Redactor

logger = get_logger()
TAIL_LINES = 20
RETRY_MAX_S = 2.0
T = TypeVar("T")
LineSink = Callable[[bytes, bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Workspace:
    """The job's directory: the checkout, the agent's HOME and config, the job's git directory, and the
    runner's own files (log, askpass, git's HOME, the diff) in a directory the agent never sees."""

    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def agent(self) -> Path:
        return self.root / "agent"

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def private(self) -> Path:
        return self.root / "runner"


class JobEnded(Exception):
    """The job ends here with this status and reason (the work so far is still collected)."""

    def __init__(self, status: str, reason: EndReason, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Lost(Exception):
    """The job is no longer ours (another attempt owns it, or it was ended elsewhere): stop quietly."""


@dataclass(slots=True)
class Streamed:
    """A streamed child's end and its last output lines (for the error that names why it failed)."""

    finished: procs.Finished
    tail: list[str]

    @property
    def ok(self) -> bool:
        return self.finished.returncode == 0

    def last(self, n: int = 3) -> str:
        return " | ".join(self.tail[-n:])


class JobContext:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        record: JobRecord,
        attempt: int,
        deadline: float,
        log: JobLog,
        redact: Redactor,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.record = record
        self.job_id = record.id
        self.owner = record.owner
        self.attempt = attempt
        self.deadline = deadline  # the loop's monotonic clock
        self.log = log
        self.redact = redact
        self.stop = asyncio.Event()
        self.stop_why = ""
        self.phase = "cloning"
        self.progress = 0
        self._unreachable = False
        # The agent's account so far: what its events said, what its key was metered.
        self.agent = AgentProgress()
        self.metered: JobKeyUsage | None = None
        self.egress_denied = 0  # the agent's connections its egress proxy refused
        self.agent_started = False

    def add_secret(self, value: str) -> None:
        """A value the job's log, artifacts and errors must never show from now on."""
        self.redact = self.log.redact = self.redact.with_secret(value)

    def request_stop(self, why: str) -> None:
        if not self.stop.is_set():
            self.stop_why = why
            self.stop.set()

    # -- heartbeat, cancel, lost -------------------------------------------------------------------
    async def enter(self, phase: str, progress: int) -> None:
        self.phase, self.progress = phase, progress
        await self.beat()

    async def beat(self) -> str:
        """A heartbeat with the current phase and progress; when Redis is away ('unreachable') they wait here
        and the watchdog's next beat carries them. The reaper judges an outage past JOB_STALE_S."""
        try:
            verdict = await self.jobs.heartbeat(self.job_id, self.attempt, self.phase, self.progress)
        except REDIS_DOWN as exc:
            if not self._unreachable:
                logger.warning("heartbeat failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
            self._unreachable = True
            return "unreachable"
        if self._unreachable:
            logger.info("heartbeat back", extra={"job_id": self.job_id})
            self._unreachable = False
        if verdict in ("cancel", "lost"):
            self.request_stop(verdict)
        return verdict

    async def watch(self) -> None:
        tick = min(0.5, self.settings.job_heartbeat_s)
        while True:
            try:
                await self.beat()
            except Exception as exc:  # whatever else went wrong, the next beat tries again
                logger.warning("heartbeat failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
            await asyncio.sleep(tick)

    def timed_out(self) -> JobEnded:
        return JobEnded("timed_out", EndReason.TIMEOUT, f"the job ran past its timeout ({self.record.timeout_ms} ms)")

    def check_stop(self) -> None:
        if self.stop_why == "lost":
            raise Lost()
        if self.stop_why == "cancel":
            raise JobEnded("cancelled", EndReason.CANCELLED_BY_USER, "cancelled while " + self.phase)
        if asyncio.get_running_loop().time() >= self.deadline:
            raise self.timed_out()

    # -- children ----------------------------------------------------------------------------------
    async def stream(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        source: str,
        on_stdout: LineSink | None = None,
        confine: Callable[[], None] | None = None,
    ) -> Streamed:
        """Run a child to its end with its output in the live log; a stop or the deadline kills its group
        and ends the job here."""
        tail: list[str] = []

        async def lines(raw: bytes, cut: bool) -> None:
            text = raw.decode(errors="replace") + (" …[line cut]" if cut else "")
            tail.append(text)
            del tail[:-TAIL_LINES]
            await self.log.line(source, text, level="warn" if source.endswith("stderr") else "info")

        finished = await procs.run(
            argv,
            env=env,
            cwd=cwd,
            on_stdout=on_stdout or lines,
            on_stderr=lines,
            stop=self.stop,
            stop_reason=lambda: self.stop_why,
            deadline=self.deadline,
            grace_s=self.settings.job_kill_grace_s,
            confine=confine,
        )
        if finished.stopped:
            await self.log.line("runner", f"stopped {source} ({finished.stopped}): process group killed", level="warn")
            self.check_stop()
            if finished.stopped == "timeout":
                raise self.timed_out()
        return Streamed(finished, tail)

    # -- Redis patience ----------------------------------------------------------------------------
    def patience_left(self) -> float:
        """How long a Redis call the job needs may be retried: past its deadline plus JOB_STALE_S, the reaper
        has ended the job anyway."""
        return max(0.0, self.deadline + self.settings.job_stale_s - asyncio.get_running_loop().time())

    async def until_redis_answers(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.patience_left()
        delay, told = 0.1, False
        while True:
            try:
                return await call()
            except REDIS_DOWN as exc:
                if loop.time() + delay > give_up:
                    raise
                if not told:
                    logger.warning(
                        "redis unreachable: retrying",
                        extra={"job_id": self.job_id, "step": what, "error": type(exc).__name__},
                    )
                    told = True
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
