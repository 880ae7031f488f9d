"""One agent job, start to end, in four stages (`agent_task/stages/`), each a function that returns what the
next needs: claim → 1. clone → 2. the agent (patch, `kilo run`) → 3. the change (diff; commit, push and pull
request) → 4. finish (artifacts, final state in one atomic step). Used by the ECS task and by the local worker.

Whatever happens, the job ends in a final state with a reason, its artifacts uploaded and its working tree
removed — except when the runner itself is killed: then its worker (its parent) starts the next attempt or
fails the job, and removes the workspace (named by the job id); on ECS the finalizer fails a stopped task's
job. Redis may be away for a while (shorter than JOB_STALE_S): log lines and heartbeats wait in the runner,
and what the job cannot do without (its end above all) is retried until Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from agent_task import review, session
from agent_task.context import JobContext, JobEnded, Lost, Workspace
from agent_task.joblog import JobLog
from agent_task.stages import agent, clone, deploy, finish, publish
from kilo_bridge.config import Settings
from kilo_bridge.jobs.catalogue import get_agent
from kilo_bridge.jobs.models import JobResult
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.record import JobRecord, job_binding
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.jobs.workspace import fresh_workspace, remove_workspace, runner_name
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.clock import now_ms
from kilo_bridge.platform.redis import Store
from kilo_bridge.platform.sealing import JOB_SCOPE, SealBroken, secret_box
from kilo_bridge.platform.security import Redactor

logger = get_logger()


@dataclass(slots=True)
class SoFar:
    """What the stages produced before the job ended (its partial work is part of the audit)."""

    checkout: clone.Checkout | None = None
    minted: str | None = None  # a GitHub App installation token minted for this job alone
    change: publish.Change | None = None
    deploy: deploy.DeployRun | None = None  # a deploy job's preparation and deploy


@dataclass(frozen=True, slots=True)
class Opened:
    """What the runner read and checked before the stages: the secrets and the patch the job was sealed with."""

    env: dict[str, str]
    patch: str | None
    tampered: bool


class Runner:
    def __init__(self, settings: Settings, job_id: str, worker: str | None = None) -> None:
        self.settings = settings
        self.job_id = job_id
        self.worker = worker or runner_name(os.getpid())
        self.store = Store(settings)
        self.jobs = JobStore(self.store)

    async def run(self) -> str:
        """Run the job; returns the final status, or why nothing was done ('busy', 'done', 'missing', 'lost')."""
        try:
            return await self._run()
        finally:
            await self.store.close()

    async def _run(self) -> str:
        record = await self.jobs.get(self.job_id)
        if record is None:
            logger.warning("job not found", extra={"job_id": self.job_id})
            return "missing"
        claim = await self.jobs.claim(self.job_id, record.owner, self.worker)
        if claim.verdict != "ok":
            logger.info("job not claimed", extra={"job_id": self.job_id, "verdict": claim.verdict})
            return claim.verdict
        deadline = asyncio.get_running_loop().time() + max(0.0, (claim.deadline_ms - now_ms()) / 1000)
        patch = await self.jobs.patch(self.job_id)
        profile_env, tampered = await self._secrets(record, patch)
        redact = Redactor([*profile_env.values(), self.settings.api_key])
        ws = Workspace(await asyncio.to_thread(fresh_workspace, self.settings, self.job_id))
        ws.private.mkdir(mode=0o700)
        log = self._log(ws, redact, claim.attempt)
        ctx = JobContext(self.settings, self.jobs, record, claim.attempt, deadline, log, redact)
        watchdog = asyncio.create_task(ctx.watch())
        try:
            return await self._job(ctx, record, ws, Opened(profile_env, patch, tampered))
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await asyncio.to_thread(remove_workspace, self.settings, self.job_id)

    async def _secrets(self, record: JobRecord, patch: str | None) -> tuple[dict[str, str], bool]:
        """The job's profileEnv, opened only for the record it was sealed with (True: the record, its patch
        or its seal was changed after submission; nothing is opened, the job fails `record_tampered`)."""
        sealed = await self.jobs.sealed_env(self.job_id)
        if not sealed:  # every job is sealed at submission, with or without secrets
            return {}, True
        box = secret_box(self.settings)
        try:
            return await asyncio.to_thread(box.open, self.job_id, sealed, JOB_SCOPE, job_binding(record, patch)), False
        except SealBroken:
            logger.warning("job record tampered with", extra={"job_id": self.job_id})
            return {}, True

    def _log(self, ws: Workspace, redact: Redactor, attempt: int) -> JobLog:
        st = self.settings
        path = ws.private / "log.jsonl"
        return JobLog(self.jobs, self.job_id, redact, path, st.job_log_max_bytes, st.job_log_max_lines, attempt)

    async def _job(self, ctx: JobContext, record: JobRecord, ws: Workspace, opened: Opened) -> str:
        status, reason, error = "succeeded", None, None
        result, so_far = JobResult(), SoFar()
        try:
            await ctx.log.line(
                "runner",
                f"job {self.job_id} attempt {ctx.attempt} on {self.worker}: agent {record.agent} on {record.repo_url}",
            )
            if opened.tampered:
                raise JobEnded(
                    "failed",
                    EndReason.RECORD_TAMPERED,
                    "the job's record, patch or sealed secrets changed after it was submitted; nothing was run",
                )
            result = await self._stages(ctx, ws, opened, so_far)
        except JobEnded as ended:
            status, reason, error = ended.status, ended.reason, ctx.redact(ended.message)[:2000]
        except Lost:
            logger.warning("job lost to another attempt", extra={"job_id": self.job_id})
            return "lost"
        except Exception as exc:  # the job must still end, with a reason
            logger.exception("runner error", extra={"job_id": self.job_id})
            status, reason, error = (
                "failed",
                EndReason.INTERNAL_ERROR,
                ctx.redact(f"{type(exc).__name__}: {exc}")[:2000],
            )
        if so_far.deploy is not None:
            result.deploy = so_far.deploy.outcome
        if not opened.tampered:
            await session.keep(ctx, opened.env)
        diff = await self._partial(ctx, ws, status, so_far, result)
        finish.fill(ctx, result)
        if error:
            await ctx.log.line("runner", f"job ended {status}: {reason}: {error}", level="error")
        else:
            await ctx.log.line("runner", f"job ended {status}")
        await finish.report_on_github(ctx, so_far.minted, status, reason, error, result)
        finished = await finish.finish(ctx, ws, status, reason, error, result, diff)
        return status if finished else "lost"

    async def _partial(self, ctx: JobContext, ws: Workspace, status: str, so_far: SoFar, result: JobResult) -> bytes:
        """The diff the job keeps: the pushed change, or the work so far of a job that ended early."""
        if so_far.checkout is None:
            return b""
        if so_far.deploy is not None and so_far.deploy.change is not None:
            return so_far.deploy.change.diff  # the agent's change, as it was before the deploy ran
        if status == "succeeded" and so_far.change is not None:
            return so_far.change.diff
        try:
            change = await publish.collect(so_far.checkout, ws, ctx.settings.agent_max_file_mb)
        except Exception as exc:  # the job ends all the same, without its partial diff
            logger.warning("partial diff not collected", extra={"job_id": self.job_id, "error": type(exc).__name__})
            return b""
        result.diff_stat, result.files_changed = change.stat, change.files
        return change.diff

    async def _stages(self, ctx: JobContext, ws: Workspace, opened: Opened, so_far: SoFar) -> JobResult:
        profile_env = opened.env
        spec = get_agent(self.settings.agents_path, ctx.record.agent)
        repo = clone.checked_repo(ctx)
        sandbox = await agent.sandbox_for(ctx)
        await ctx.log.line("runner", await asyncio.to_thread(agent.limits_line, ctx, sandbox))
        token, so_far.minted = await clone.repository_token(ctx, repo, spec, profile_env)

        # 1. clone
        checkout = so_far.checkout = await clone.clone(ctx, repo, token, ws)

        # 2. the patch, if the run carries one; then the agent
        task = await agent.prepare_task(ctx, spec, checkout, ws, opened.patch)
        task.text = await review.begin(ctx, repo, task.text)  # a pull request review: its range, rules and check
        await ctx.enter("agent", 10)
        if spec.after == "deploy":  # the agent prepares (without the profile's values); the runner deploys
            so_far.deploy = deploy.DeployRun(ctx, spec, checkout, sandbox, ws)
            change = so_far.change = await so_far.deploy.run(self.store, task, profile_env)
            summary, outcome = ctx.agent.summary(), so_far.deploy.outcome
            if outcome is not None and outcome.url:  # said where the job came from, too (its GitHub thread)
                summary = f"{summary}\n\nDeployed: {outcome.url}".strip()
            return JobResult(files_changed=change.files, diff_stat=change.stat, exit_code=0, summary=summary)
        await agent.AgentRun(ctx, spec, checkout, sandbox, ws).run(self.store, profile_env, task)

        # 3. the change (without the patch's leftovers); commit, push, pull request
        change = so_far.change = await publish.the_change(ctx, checkout, ws, task.rejects)
        result = JobResult(files_changed=change.files, diff_stat=change.stat, exit_code=0, summary=ctx.agent.summary())
        why = publish.why_not_pushed(ctx, spec, change)
        if why:
            await ctx.log.line("runner", f"no push: {why}")
        else:
            await publish.publish(ctx, spec, checkout, change, result)
        return result
