"""The local worker: takes job ids from the bullmq queue and runs each in its own runner process
(`python -m agent_task JOB_ID`, the same entry point as the ECS task), plus the reaper.

A runner dies with its worker (PR_SET_PDEATHSIG); bullmq's stalled-job check then hands the job to another
worker, whose runner takes it over once the heartbeat is stale (or fails it when attempts are used up). A
runner that dies alone is its worker's child: the worker sees it at once and starts the next attempt.
Stopping the worker takes no new job and waits JOB_SHUTDOWN_GRACE_S for running ones; it then stops their
runners, which leaves those jobs to the same takeover (said in each job's live log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

import orjson

from kilo_bridge.config import PROJECT_ROOT, Settings, check_sandbox_concurrency, settings_env
from kilo_bridge.jobs.queue import QUEUE_NAME, bull_prefix
from kilo_bridge.jobs.record import log_entry, valid_job_id
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.jobs.workspace import remove_workspace, runner_name
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.aio import die_with_parent
from kilo_bridge.platform.redis import Store

log = get_logger()


class LocalWorker:
    def __init__(self, settings: Settings, concurrency: int | None = None) -> None:
        self.settings = settings
        self.concurrency = concurrency or settings.jobs_concurrency
        check_sandbox_concurrency(settings.agent_sandbox, self.concurrency)
        self._worker: Any = None
        self._reaper: asyncio.Task[None] | None = None
        self._store = Store(settings)
        self._running: set[str] = set()
        self.runner_env = {
            **os.environ,
            **settings_env(settings),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }

    async def start(self) -> None:
        from bullmq import Worker

        st = self.settings
        self._worker = Worker(
            QUEUE_NAME,
            self._process,
            {
                "connection": st.resolved_redis_url,
                "prefix": bull_prefix(st),
                "concurrency": self.concurrency,
                "lockDuration": st.job_lock_ms,
                "stalledInterval": st.job_stalled_check_ms,
                "maxStalledCount": st.job_max_attempts,
                "drainDelay": 2,
            },
        )
        self._reaper = asyncio.create_task(self._reap_forever())
        log.info("worker started", extra={"concurrency": self.concurrency, "queue": QUEUE_NAME})

    async def _process(self, job: Any, _token: str) -> str:
        job_id = str((job.data or {}).get("jobId", ""))
        if not valid_job_id(job_id):
            raise RuntimeError("queued message without a job id")
        self._running.add(job_id)
        try:
            while True:
                code, runner = await self._run_runner(job_id)
                if await self._runner_exited(job_id, runner, code) != "retry":
                    break
        finally:
            self._running.discard(job_id)
        if code != 0:
            raise RuntimeError(f"runner exited with {code}")
        return "done"

    async def _run_runner(self, job_id: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent_task",
            job_id,
            cwd=str(PROJECT_ROOT),
            env=self.runner_env,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        try:
            return await proc.wait(), runner_name(proc.pid)
        except asyncio.CancelledError:
            proc.kill()
            raise

    async def _runner_exited(self, job_id: str, runner: str, code: int) -> str:
        """The runner is our child, so its death is seen at once: a job it left running (it was killed, or
        crashed) goes to its next attempt now, or ends with the reason, instead of waiting out
        JOB_TAKEOVER_S / JOB_STALE_S; its workspace (the agent's HOME included) is removed either way."""
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        then = {"retry": "the next attempt starts now", "failed": "no attempts left", "cancelled": "cancelled"}
        said = {v: orjson.dumps(log_entry("worker", "warn", f"the runner died ({how}); {t}")) for v, t in then.items()}
        try:
            verdict = await JobStore(self._store).release(job_id, runner, f"the job's runner died ({how})", said)
        except Exception as exc:  # Redis away: the takeover after JOB_TAKEOVER_S still applies
            log.warning("runner exit not recorded", extra={"job_id": job_id, "error": type(exc).__name__})
            verdict = "unknown"
        if verdict == "" or (verdict == "unknown" and code == 0):
            return verdict  # it ended its job (and removed its workspace), or another attempt owns the job
        with contextlib.suppress(OSError):
            await asyncio.to_thread(remove_workspace, self.settings, job_id)
        if verdict in then:
            log.warning("runner died", extra={"job_id": job_id, "how": how, "verdict": verdict})
        return verdict

    async def _reap_forever(self) -> None:
        jobs = JobStore(self._store)
        interval = max(1.0, min(30.0, self.settings.job_heartbeat_s))
        while True:
            try:
                moved = await jobs.reap()
                for job_id, status in moved.items():
                    log.warning("reaper ended job", extra={"job_id": job_id, "status": status})
            except Exception as exc:
                log.warning("reaper failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self._worker is not None:
            await self._worker.pause(do_not_wait_active=True)  # no new job from here on
            pending: set[Any] = set()
            running = [task for task in self._worker.processing if not task.done()]
            if running:
                grace = self.settings.job_shutdown_grace_s
                if self._running:  # else bullmq is only filing a finished job away
                    log.warning(
                        "stopping: waiting for running jobs", extra={"jobs": sorted(self._running), "grace_s": grace}
                    )
                _done, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                await self._interrupted(sorted(self._running))
            await self._worker.close(force=bool(pending))
        await self._store.close()

    async def _interrupted(self, job_ids: list[str]) -> None:
        log.warning(
            "stopping: running jobs interrupted; a worker takes them over when one runs",
            extra={"jobs": job_ids, "takeover_s": self.settings.job_takeover_s},
        )
        msg = (
            f"worker stopped during the run; the job resumes when a worker runs again (after "
            f"{self.settings.job_takeover_s:g} s without heartbeat), up to JOB_MAX_ATTEMPTS runs"
        )
        jobs = JobStore(self._store)
        for job_id in job_ids:
            line = orjson.dumps(log_entry("worker", "warn", msg))
            try:
                await jobs.append_log(job_id, [line])
            except Exception as exc:  # Redis may be the reason we stop: said here instead of in the job's log
                log.warning(
                    "interrupted job's log line not written", extra={"job_id": job_id, "error": type(exc).__name__}
                )
