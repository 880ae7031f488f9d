"""Child processes the runner can always stop: each in its own process group (so the agent's own children
go with it), killed if the runner itself dies (PR_SET_PDEATHSIG), stopped with SIGTERM then SIGKILL of the
whole group. Output is read in chunks and split into capped lines: a child printing a 1 GB line cannot
exhaust memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kilo_bridge.observability import get_logger
from kilo_bridge.platform.aio import die_with_parent

logger = get_logger()

MAX_LINE = 16_384
READ_CHUNK = 65_536
# The leader of the agent's process group: when the runner dies, the kernel sends it SIGHUP and it kills the
# whole group (the agent's own children included: a dying parent alone would orphan them). A SIGTERM from
# the runner is passed on, and the guard keeps waiting, so the agent still gets its grace period.
GUARD = """
trap 'kill -KILL 0' HUP
trap 'kill -TERM "$pid" 2>/dev/null' TERM
"$@" & pid=$!
while :; do wait "$pid"; rc=$?; kill -0 "$pid" 2>/dev/null || break; done
exit $rc
"""


def _before_exec(signum: int, confine: Callable[[], None] | None) -> Callable[[], None]:
    """The child's steps between fork and exec: die with the runner, then join the run's limits (so nothing
    the child starts is ever outside them)."""

    def steps() -> None:  # pragma: no cover - runs between fork and exec
        die_with_parent(signum)
        if confine is not None:
            confine()

    return steps


@dataclass(slots=True)
class Finished:
    returncode: int | None
    stopped: str | None  # why it was stopped early ("timeout", "cancel", "budget", …), else None


async def _pump(stream: asyncio.StreamReader, on_line: Callable[[bytes, bool], Awaitable[None]]) -> None:
    """Feed complete lines (cut at MAX_LINE, flagged as cut) to on_line."""
    buf = b""
    dropping = False
    while chunk := await stream.read(READ_CHUNK):
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:
                    if not dropping:
                        await on_line(buf[:MAX_LINE], True)
                    dropping, buf = True, b""
                break
            line, buf = buf[:nl], buf[nl + 1 :]
            if dropping:
                dropping = False  # the rest of an over-long line
                continue
            await on_line(line[:MAX_LINE], len(line) > MAX_LINE)
    if buf and not dropping:
        await on_line(buf[:MAX_LINE], len(buf) > MAX_LINE)


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    on_stdout: Callable[[bytes, bool], Awaitable[None]],
    on_stderr: Callable[[bytes, bool], Awaitable[None]],
    stop: asyncio.Event,
    stop_reason: Callable[[], str],
    deadline: float,
    grace_s: float,
    confine: Callable[[], None] | None = None,
) -> Finished:
    """Run argv to the end, or until `stop` is set or the monotonic `deadline` passes. A cancel kills at once
    (no grace: nothing the child does after it was cancelled may become the job's work); any other stop
    (deadline, budget) gives it grace_s to end after SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        GUARD,
        "kb-guard",
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_before_exec(signal.SIGHUP, confine),
    )
    assert proc.stdout is not None and proc.stderr is not None
    pumps = asyncio.gather(_pump(proc.stdout, on_stdout), _pump(proc.stderr, on_stderr))
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait())
    reason: str | None = None
    try:
        remaining = deadline - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait({waiter, stopper}, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            reason = stop_reason() if stopper in done else "timeout"
            if reason == "cancel":
                kill_group(proc.pid, signal.SIGKILL)
            else:
                kill_group(proc.pid, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), grace_s)
                kill_group(proc.pid, signal.SIGKILL)
            await waiter
        # Stragglers: what the agent left running in its group (background servers, sleeps).
        kill_group(proc.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(pumps, 10)
        except TimeoutError:
            pumps.cancel()  # a grandchild kept the pipes open after the group was killed
    finally:
        stopper.cancel()
        if proc.returncode is None:
            kill_group(proc.pid, signal.SIGKILL)
            await _reap(proc)
    return Finished(proc.returncode, reason)


async def capture(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    timeout_s: float,
    confine: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[int, bytes, bytes]:
    """A short command's (returncode, stdout, stderr); its group is killed when it overruns timeout_s, or at
    once when `stop` is set (then the caller sees the stop and ends the job)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_before_exec(signal.SIGKILL, confine),
    )
    talk = asyncio.ensure_future(proc.communicate())
    stopper = asyncio.ensure_future(stop.wait() if stop is not None else asyncio.Event().wait())
    try:
        done, _ = await asyncio.wait({talk, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if talk not in done:
            kill_group(proc.pid, signal.SIGKILL)
            talk.cancel()
            await proc.wait()
            return -9, b"", b"stopped" if stopper in done else b"timed out"
        out, err = talk.result()
    finally:
        stopper.cancel()
        if proc.returncode is None:
            kill_group(proc.pid, signal.SIGKILL)
            await _reap(proc)
    return proc.returncode or 0, out, err


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Waits for a killed child on the way out of a failure, which is what the caller reports: a failure to
    wait is logged, never raised over it."""
    try:
        await proc.wait()
    except Exception as exc:
        logger.warning("a killed process was not reaped", extra={"pid": proc.pid, "error": type(exc).__name__})
