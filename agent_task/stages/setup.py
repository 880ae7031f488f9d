"""Before the agent: its profile's setup commands (e.g. installing dependencies), each in the agent's sandbox
with the agent's environment and network policy (behind the same door: the egress proxy of an `allowlist` job),
logged live (`source: setup`), bounded by the job's timeout. One that fails ends the job `setup_failed` with its
output's tail; the agent never starts."""

from __future__ import annotations

from collections.abc import Callable

from agent_task.context import JobContext, JobEnded
from kilo_bridge.jobs.reasons import EndReason


async def run_setup(
    ctx: JobContext,
    sandboxed: Callable[[list[str]], list[str]],
    env: dict[str, str],
    cwd: str,
    confine: Callable[[], None],
) -> None:
    """`sandboxed` turns a command into the argv that runs it where the agent runs (its sandbox, its door)."""
    commands = ctx.record.setup
    for n, command in enumerate(commands, 1):
        await ctx.log.line("setup", f"$ {command}")
        streamed = await ctx.stream(sandboxed(["/bin/sh", "-c", command]), env, cwd, "setup", confine=confine)
        if not streamed.ok:
            raise JobEnded(
                "failed",
                EndReason.SETUP_FAILED,
                f"setup command {n} of {len(commands)} exited {streamed.finished.returncode}: {streamed.last(5)}",
            )
    if commands:
        await ctx.log.line("runner", f"setup done ({len(commands)} commands)")
