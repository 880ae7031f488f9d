"""Stage 2: the run's patch applied (what does not apply is left for the agent), then the Kilo CLI run in its
sandbox on the job's own key, its JSON events turned into progress and log lines (never into money)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from agent_task import limits, procs
from agent_task.context import JobContext, JobEnded, Workspace
from agent_task.door import Door
from agent_task.kilo import (
    cli_env,
    listed_agents,
    listing_digest,
    not_denied,
    provider_config,
    read_listing,
    write_listing,
)
from agent_task.meter import Meter
from agent_task.sandbox import Sandbox, SandboxUnavailable, resolve
from agent_task.stages.clone import Checkout
from kilo_bridge.jobs.catalogue import AgentSpec
from kilo_bridge.jobs.policy import REPO_TOKEN_NAMES
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.workspace import workdir
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.money import usd
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.redis import Store

logger = get_logger()
# A persistent gateway error the agent met, as the reason its job failed (else `agent_failed`).
GATEWAY_REASONS = {
    "credits_exhausted": EndReason.CREDITS_EXHAUSTED,
    "upstream_rate_limited": EndReason.GATEWAY_RATE_LIMITED,
    "rate_limited": EndReason.GATEWAY_RATE_LIMITED,
    "upstream_unavailable": EndReason.GATEWAY_UNAVAILABLE,
    "upstream_timeout": EndReason.GATEWAY_UNAVAILABLE,
    "upstream_unreachable": EndReason.GATEWAY_UNAVAILABLE,
    "gateway_auth_failed": EndReason.GATEWAY_AUTH_FAILED,
}


@dataclass(slots=True)
class Task:
    """What the agent is asked to do, and the `.rej` files a patch left for it (removed before the diff)."""

    text: str
    rejects: list[str] = field(default_factory=list)


async def sandbox_for(ctx: JobContext) -> Sandbox:
    st = ctx.settings
    try:
        sandbox = await asyncio.to_thread(resolve, st.agent_sandbox, st.agent_user, st.kilo_cli_path)
    except SandboxUnavailable as exc:
        raise JobEnded("failed", EndReason.SANDBOX_UNAVAILABLE, str(exc)) from None
    return replace(sandbox, tmp_mb=st.agent_tmp_mb)


def sandbox_uid(sandbox: Sandbox) -> int | None:
    """The kernel uid the agent runs as (None: the runner's own, which bubblewrap keeps under its 65534)."""
    return sandbox.user[0] if sandbox.mode == "user" and sandbox.user else None


def limits_line(ctx: JobContext, sandbox: Sandbox) -> str:
    """How each resource limit will hold for this job's agent (said among the job log's first lines)."""
    with limits.confined(ctx.settings, ctx.job_id, sandbox_uid(sandbox)) as box:
        return box.describe(sandbox.mode)


async def prepare_task(ctx: JobContext, spec: AgentSpec, checkout: Checkout, ws: Workspace, patch: str | None) -> Task:
    """The task; `patch` is the one the job's seal was checked against (never read again from Redis)."""
    record = ctx.record
    task = Task(record.prompt or spec.default_prompt or "")
    if patch is not None:
        task = await apply_patch(ctx, checkout, ws, patch, record.prompt)
    return task


async def apply_patch(ctx: JobContext, checkout: Checkout, ws: Workspace, patch: str, prompt: str | None) -> Task:
    """Apply the run's diff; what does not apply is left for the agent (conflict markers from a three-way
    merge, or `.rej` files where the clone lacks the patch's base: clones are shallow). The task follows."""
    path = ws.root / "run.patch"  # outside the checkout: never part of the change
    path.write_text(patch)
    rc, out, err = await checkout.git_cmd("apply", "--3way", "--whitespace=nowarn", str(path))
    _, conflicts, _ = await checkout.git_cmd("diff", "--name-only", "--diff-filter=U")
    conflicted = conflicts.decode(errors="replace").split()
    rejects: list[str] = []
    if rc != 0 and not conflicted:
        rc, out, err = await checkout.git_cmd("apply", "--reject", "--whitespace=nowarn", str(path))
        rejects = sorted(str(p.relative_to(checkout.dir)) for p in checkout.dir.rglob("*.rej"))
        if rc != 0 and not rejects:
            said = ctx.redact((out + err).decode(errors="replace")).strip()
            raise JobEnded("failed", EndReason.PATCH_FAILED, f"the patch does not apply: {said[-500:]}")
        conflicted = [r.removesuffix(".rej") for r in rejects]
    if conflicted:
        await ctx.log.line("runner", f"patch applied with conflicts in {', '.join(conflicted[:20])}", level="warn")
        how = "in the .rej files beside them (apply each rejected hunk by hand)" if rejects else "as conflict markers"
        text = (
            f"A patch was applied to this checkout with conflicts in {', '.join(conflicted[:50])}, "
            f"{how}: resolve every conflict against the current code, keeping the patch's intent."
        )
    else:
        await ctx.log.line("runner", "patch applied cleanly")
        text = "A patch was applied to this checkout (see `git diff`)."
    then = prompt or (
        "Make sure the repository still builds and its tests pass (run them when it has them), "
        "fixing only what the patch broke."
    )
    return Task(f"{text} {then}", rejects)


class AgentRun:
    """One `kilo run` of the job's agent in its sandbox, its model calls metered on the job's own key."""

    def __init__(self, ctx: JobContext, spec: AgentSpec, checkout: Checkout, sandbox: Sandbox, ws: Workspace):
        self.ctx, self.spec, self.checkout, self.sandbox, self.ws = ctx, spec, checkout, sandbox, ws

    async def run(self, store: Store, profile_env: dict[str, str], task: Task) -> None:
        ctx, spec, st = self.ctx, self.spec, self.ctx.settings
        record = ctx.record
        model = record.model or st.kilo_default_model
        if record.max_cost_usd is not None and not await priced(ctx, model):
            # A cap that cannot be enforced is refused rather than silently ignored.
            raise JobEnded(
                "failed",
                EndReason.BUDGET_UNPRICED,
                f"maxCostUsd is set but {model} has no price in the Kilo "
                "Gateway's model list, so its cost cannot be tracked; the agent was not started",
            )
        cli = self.sandbox.cli or st.kilo_cli_path
        if not os.access(st.kilo_cli_path, os.X_OK):
            raise JobEnded(
                "failed",
                EndReason.AGENT_FAILED,
                f"the Kilo CLI is not installed at {st.kilo_cli_path} "
                "(`make install` puts the pinned one in agent_task/node_modules; or set KILO_CLI)",
            )
        meter = Meter(ctx, KeyStore(store))
        job_key = await meter.open_key()
        network = ctx.record.network or spec.network
        door = Door(ctx, job_key, network, tcp=self.sandbox.mode != "bwrap")
        try:
            opened = await door.open()
            agent_env = {k: v for k, v in profile_env.items() if k not in REPO_TOKEN_NAMES}  # git alone gets those
            config = provider_config(opened.model_url, model)
            env = cli_env(st, self.ws.agent, st.agents_path, config, agent_env, job_key) | opened.env()
            self.confine()
            with limits.confined(st, ctx.job_id, sandbox_uid(self.sandbox)) as box:
                await ctx.log.line("runner", f"sandbox: {self.sandbox.mode}; network: {network}")
                await self.check_agent(env, cli, box.join)
                await ctx.log.line("runner", f"kilo run --agent {spec.name} (model {model}, through the runner)")
                run = opened.launch([cli, "run", "--auto", "--format", "json", "--agent", spec.name, "--", task.text])
                argv = self.wrap(limits.reporting_tmp(run) if self.sandbox.mode == "bwrap" else run, opened.binds)
                ctx.agent_started = True
                watching = asyncio.create_task(meter.watch())
                try:
                    streamed = await ctx.stream(
                        argv, env, str(self.checkout.dir), "kilo-stderr", on_stdout=self.on_event, confine=box.join
                    )
                finally:
                    box.kill_all()  # what the agent left running, wherever it went
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
                hits = box.hits(streamed.tail)
        finally:
            await door.close()  # the calls the agent's end cut are settled (charged) here
            ctx.egress_denied = door.denied
            await meter.read()  # what happened since the last look, said before the job ends
            await meter.settle()
        await self.held_at(hits)
        self.judge(streamed.finished.returncode, streamed.tail)

    async def held_at(self, hits: list[str]) -> None:
        """A limit the kernel held the agent at ends the job, named (its work may be cut short anywhere)."""
        limit = self.ctx.settings.agent_max_file_mb * limits.MB
        for top in (self.checkout.dir, self.ws.agent):
            big = await asyncio.to_thread(limits.oversized, top, limit)
            if big:
                name, size = big[0]
                hits.append(f"AGENT_MAX_FILE_MB ({limit // limits.MB} MB): {name} reached {size // limits.MB} MB")
                break
        if hits:
            for hit in hits:
                await self.ctx.log.line("runner", f"limit hit: {hit}", level="error")
            raise JobEnded("failed", EndReason.RESOURCE_LIMIT, "the agent was held at a limit: " + "; ".join(hits))

    def judge(self, returncode: int | None, tail: list[str]) -> None:
        """The agent's end as the job's: a cost cap reached, a gateway error it kept meeting, or its failure."""
        ctx = self.ctx
        usage = ctx.metered
        spent = f"${usd(usage.spend_nusd):.4f}" if usage else "unknown"
        if usage is not None and usage.budget_refusals:
            raise JobEnded(
                "failed",
                EndReason.BUDGET_EXCEEDED,
                f"the agent's next model call would pass maxCostUsd ({ctx.record.max_cost_usd}); spent {spent}",
            )
        if returncode != 0 or ctx.agent.errors:
            detail = "; ".join(ctx.agent.errors[-2:]) or " | ".join(tail[-3:])
            failed = EndReason.AGENT_FAILED
            reason = GATEWAY_REASONS.get(usage.last_error or "", failed) if usage else failed
            if reason is not failed and usage is not None:
                detail = f"the Kilo Gateway answered {usage.last_error} ({usage.failed} failed calls); {detail}"
            raise JobEnded("failed", reason, f"the agent exited with {returncode}: {detail}")

    async def on_event(self, raw: bytes, cut: bool) -> None:
        ctx = self.ctx
        event = event_of(raw) if not cut else None
        if event is None:
            await ctx.log.line("kilo", raw.decode(errors="replace") + (" …[line cut]" if cut else ""))
            return
        said = ctx.agent.apply(event)
        ctx.progress = min(80, 10 + 7 * ctx.agent.steps)
        await ctx.log.line(
            "kilo",
            said or str(event.get("type")),
            event=event,
            level="error" if event.get("type") == "error" else "info",
        )

    def wrap(self, argv: list[str], sockets: dict[str, str] | None = None) -> list[str]:
        return self.sandbox.wrap(
            argv,
            cwd=self.checkout.dir,
            writable=[self.ws.agent],
            readable=[],
            repo_writable=not self.spec.read_only,
            sockets=sockets,
        )

    def confine(self) -> None:
        """As its own user, the agent owns its HOME and config (and the checkout, unless it only reports);
        the workspace lets it pass through to them, never list or read the runner's files."""
        if self.sandbox.mode != "user" or self.sandbox.user is None:
            return
        uid, gid = self.sandbox.user
        self.ws.root.chmod(0o711)
        owned: list[Path] = [self.ws.agent] + ([] if self.spec.read_only else [self.checkout.dir])
        for top in owned:
            for root, dirs, files in os.walk(top):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, uid, gid)

    async def check_agent(self, env: dict[str, str], cli: str, confine: Callable[[], None]) -> None:
        """The CLI must know the agent by its name (an unknown `--agent` only warns and runs the CLI's default
        agent, which may do anything), and a report-only agent must come out of the CLI's own rule merge
        denying every tool that could change or leave its checkout."""
        spec, st = self.spec, self.ctx.settings
        # The listing depends on the CLI's build and the catalogue alone (the checkout's config is ignored,
        # profileEnv may not set KILO_*): listed once per pair, kept in the runner's own work directory.
        cache = workdir(st) / f".kilo-agents-{listing_digest(cli, st.agents_path)}.json"
        cached = await asyncio.to_thread(read_listing, cache)
        rc, err = 0, b""
        if cached is not None:
            agents, home = cached
        else:
            # Into a file: the CLI exits without draining a full pipe, and its listing is larger than one.
            listing = self.ws.agent / "agent-list.txt"
            to_file = 'exec "$0" "$@" > "$KB_LISTING"'
            argv = self.wrap(["/bin/sh", "-c", to_file, cli, "agent", "list"])
            listed_env = {**env, "KB_LISTING": str(listing)}
            rc, _, err = await procs.capture(
                argv, env=listed_env, cwd=str(self.checkout.dir), timeout_s=120, confine=confine, stop=self.ctx.stop
            )
            if self.ctx.stop.is_set():
                await self.ctx.log.line("runner", f"stopped `kilo agent list` ({self.ctx.stop_why})", level="warn")
                self.ctx.check_stop()
            out = await asyncio.to_thread(listing.read_bytes) if listing.exists() else b""
            listing.unlink(missing_ok=True)
            agents, home = listed_agents(out.decode(errors="replace")), env["HOME"]
            if rc == 0 and spec.name in agents:
                await asyncio.to_thread(write_listing, cache, agents, home)
        if spec.name not in agents:
            detail = self.ctx.redact(err.decode(errors="replace").strip())[-300:]
            raise JobEnded(
                "failed",
                EndReason.AGENT_UNKNOWN,
                f"the Kilo CLI does not know the agent {spec.name!r} (`kilo agent list` exited {rc}"
                + (f": {detail}" if detail else "")
                + "); the job is not run with the CLI's default agent instead",
            )
        if spec.read_only:
            left = not_denied(agents[spec.name], home)
            if left:
                raise JobEnded(
                    "failed",
                    EndReason.AGENT_UNSAFE,
                    f"the report-only agent {spec.name!r} is not denied {', '.join(left)} by the Kilo CLI; not run",
                )


async def priced(ctx: JobContext, model: str) -> bool:
    from kilo_bridge.gateway.client import GatewayClient
    from kilo_bridge.gateway.pricing import PriceBook

    gateway = GatewayClient(ctx.settings)
    try:
        if model in await PriceBook(gateway).prices():
            return True
    except Exception as exc:
        logger.warning("no model prices", extra={"job_id": ctx.job_id, "error": type(exc).__name__})
    finally:
        await gateway.close()
    await ctx.log.line("runner", f"no price for {model}: its calls are charged at their reservation", level="warn")
    return False


def event_of(raw: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
