"""A deploy job after its clone: the agent prepares, a person may approve, the runner deploys.

1. The agent runs with the job's normal door (its model endpoint, AGENT_EGRESS_ALLOW) and none of the profile's
   values: it builds, tests and fixes. Its summary says PASSED or FAILED (`build_failed`).
2. With `requireApproval`, the job waits in `awaiting_approval` (the command, the build's result and the diff
   shown) for a decision taken once in Redis (jobs/lua/decide.lua); a rejection or the window's end
   (DEPLOY_APPROVAL_TTL_S) cancels it. The runner stays alive and heartbeats meanwhile.
3. The runner runs the deploy's command — the run's or the profile's, never the repository's — in the same
   sandbox and checkout, with the profile's values in that command's environment alone and an egress proxy of
   its own whose allow-list is the deploy's hosts, for that step alone. Its output is the job's live log
   (`source: deploy`), redacted of every form of those values.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from agent_task import limits
from agent_task.context import JobContext, JobEnded, Lost, Workspace
from agent_task.door import Door
from agent_task.sandbox import Sandbox
from agent_task.stages import publish
from agent_task.stages.agent import AgentRun, Task, sandbox_uid
from agent_task.stages.clone import Checkout
from kilo_bridge.jobs.catalogue import AgentSpec
from kilo_bridge.jobs.egress import EgressRules, parse_allow, parse_private
from kilo_bridge.jobs.models import Approval, DeployOutcome
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.platform.clock import iso, now_ms
from kilo_bridge.platform.redis import REDIS_DOWN, Store

URL_PREFIX = "KILO_DEPLOY_URL="
APPROVAL_DIFF_MAX = 65_536
TAIL_LINES = 20
DEPLOY_PATH = "/usr/local/bin:/usr/bin:/bin"


class DeployRun:
    """One deploy job's stages after the clone; what it kept (the prepared change, the deploy's outcome) stays
    here for the job's end, whatever ended it."""

    def __init__(self, ctx: JobContext, spec: AgentSpec, checkout: Checkout, sandbox: Sandbox, ws: Workspace):
        self.ctx, self.spec, self.checkout, self.sandbox, self.ws = ctx, spec, checkout, sandbox, ws
        self.change: publish.Change | None = None  # the agent's change, before the deploy ran
        self.outcome: DeployOutcome | None = None

    async def run(self, store: Store, task: Task, profile_env: dict[str, str]) -> publish.Change:
        ctx = self.ctx
        step = ctx.record.deploy
        if step is None:
            raise JobEnded("failed", EndReason.DEPLOY_FAILED, "the job names no deploy command; nothing was deployed")
        # The agent gets none of the profile's values: they are the deploy's alone.
        await AgentRun(ctx, self.spec, self.checkout, self.sandbox, self.ws).run(store, {}, task)
        change = self.change = await publish.the_change(ctx, self.checkout, self.ws, task.rejects)
        build = ctx.redact(ctx.agent.summary()).strip()
        if build.upper().startswith("FAILED"):
            raise JobEnded(
                "failed", EndReason.BUILD_FAILED, f"the agent's build failed; nothing was deployed: {build[:1500]}"
            )
        await ctx.log.line("runner", f"prepared: {change.stat.files} files changed; build: {build[:200]}")
        if ctx.record.require_approval:
            await self.approval(change, build)
        await ctx.enter("deploying", 90)
        self.outcome = await self.deploy(str(step["command"]), [str(a) for a in step.get("allow", [])], profile_env)
        if self.outcome.exit_code != 0:
            tail = "\n".join(self.outcome.output_tail[-10:])
            raise JobEnded(
                "failed", EndReason.DEPLOY_FAILED, f"the deploy command exited with {self.outcome.exit_code}:\n{tail}"
            )
        return change

    # -- approval ----------------------------------------------------------------------------------
    async def approval(self, change: publish.Change, build: str) -> None:
        ctx = self.ctx
        step = ctx.record.deploy or {}
        expires_ms = now_ms() + ctx.settings.deploy_approval_ttl_s * 1000
        shown = Approval(
            command=str(step.get("command", "")),
            allow=list(step.get("allow", [])),
            build=build[:4000],
            diff_stat=change.stat,
            files_changed=change.files[:200],
            diff=ctx.redact(change.diff[:APPROVAL_DIFF_MAX].decode(errors="replace")),
            expires_at=iso(expires_ms),
        ).model_dump(by_alias=True, exclude={"decision"})
        verdict = await ctx.until_redis_answers(
            "await approval", lambda: ctx.jobs.await_approval(ctx.job_id, ctx.attempt, shown, expires_ms)
        )
        if verdict != "ok":
            raise Lost()
        ctx.phase = "awaiting_approval"  # the heartbeats keep it so
        await ctx.log.line("runner", f"awaiting approval until {iso(expires_ms)}: {shown['command']}")
        decision = await self.decision(expires_ms)
        if decision == "rejected":
            raise JobEnded("cancelled", EndReason.DEPLOY_REJECTED, "the deploy was rejected; nothing was deployed")
        if decision != "approved":
            raise JobEnded(
                "cancelled",
                EndReason.APPROVAL_EXPIRED,
                "no approval within DEPLOY_APPROVAL_TTL_S; nothing was deployed",
            )
        await ctx.log.line("runner", "deploy approved")

    async def decision(self, expires_ms: int) -> str:
        """Wait for the decision (a cancel, the job's deadline or losing it end the wait); at the window's end
        the runner takes `expired` itself, in the same one-time step a late approval would have taken."""
        ctx = self.ctx
        tick = min(0.5, ctx.settings.job_heartbeat_s)
        while True:
            ctx.check_stop()
            try:
                decided = await ctx.jobs.decision(ctx.job_id)
                if decided is None and now_ms() >= expires_ms:
                    out = await ctx.jobs.decide(ctx.job_id, "expired")
                    if out == "not_awaiting":
                        raise Lost()
                    decided = out.removeprefix("decided:") if out.startswith("decided:") else "expired"
            except REDIS_DOWN:
                decided = None  # asked again at the next tick; the watchdog's heartbeats wait meanwhile
            if decided is not None:
                return decided
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), timeout=tick)

    # -- the deploy --------------------------------------------------------------------------------
    async def deploy(self, command: str, allow: list[str], profile_env: dict[str, str]) -> DeployOutcome:
        ctx, st, sandbox = self.ctx, self.ctx.settings, self.sandbox
        home = self.ws.root / "deploy-home"  # fresh: nothing the agent left in its HOME configures the command
        home.mkdir(mode=0o700)
        uid = sandbox_uid(sandbox)
        if uid is not None and sandbox.user is not None:
            os.chown(home, uid, sandbox.user[1])
        rules = EgressRules(parse_allow(",".join(allow)), parse_private(st.agent_egress_allow_private))
        door = Door(ctx, "", "allowlist", tcp=sandbox.mode != "bwrap", rules=rules)
        tail: list[str] = []
        url: str | None = None

        async def line(raw: bytes, cut: bool) -> None:
            nonlocal url
            text = ctx.redact(raw.decode(errors="replace")) + (" …[line cut]" if cut else "")
            tail.append(text)
            del tail[:-TAIL_LINES]
            if text.startswith(URL_PREFIX) and not cut:
                url = text.removeprefix(URL_PREFIX).strip()[:2000] or url
            await ctx.log.line("deploy", text)

        await ctx.log.line("runner", f"deploy: {command} (hosts: {', '.join(allow) or 'none'})")
        started = time.monotonic()
        try:
            opened = await door.open()
            env = {"PATH": DEPLOY_PATH, "HOME": str(home), "LANG": "C.UTF-8"} | profile_env | opened.env()
            argv = opened.launch(["/bin/sh", "-c", "exec 2>&1\n" + command])
            argv = sandbox.wrap(
                argv, cwd=self.checkout.dir, writable=[home], readable=[], repo_writable=True, sockets=opened.binds
            )
            with limits.confined(st, ctx.job_id, uid) as box:
                try:
                    streamed = await ctx.stream(
                        argv, env, str(self.checkout.dir), "deploy", on_stdout=line, confine=box.join
                    )
                finally:
                    box.kill_all()
        finally:
            await door.close()
        tail += [ctx.redact(t) for t in streamed.tail]  # the wrapper's own complaints, if any
        outcome = DeployOutcome(
            exit_code=streamed.finished.returncode,
            duration_ms=int((time.monotonic() - started) * 1000),
            output_tail=tail[-TAIL_LINES:],
            url=url,
        )
        await ctx.log.line("runner", f"deploy exited with {outcome.exit_code} after {outcome.duration_ms} ms")
        return outcome
