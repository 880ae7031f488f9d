"""A job's Kilo CLI session across a conversation. At the agent's end the runner exports it (`kilo export ID`, in
the agent's sandbox: the CLI's storage under the agent's HOME is the agent's to tamper with), redacts it, seals it
with the secrets box for that job alone and keeps it with the job's artifacts (never listed nor served). A
follow-up opens its parent's, imports it (`kilo import FILE`) and continues it (`kilo run --session ID`): the
model's first request carries the parent's conversation, tool results included."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson

from agent_task import procs
from agent_task.context import JobContext
from kilo_bridge.jobs.artifacts import SESSION_ARTIFACT, artifact_store
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.sealing import SESSION_SCOPE as SCOPE
from kilo_bridge.platform.sealing import SealBroken, secret_box

logger = get_logger()
CLI_TIMEOUT_S = 120
Wrap = Callable[[list[str]], list[str]]


class Cli:
    """One short CLI command in the agent's sandbox, its stdout into a file of the agent's (the CLI exits
    without draining a full pipe)."""

    def __init__(self, ctx: JobContext, wrap: Wrap, cli: str, env: dict[str, str], cwd: Path, home: Path) -> None:
        self.ctx, self.wrap, self.cli, self.env, self.cwd, self.home = ctx, wrap, cli, env, cwd, home

    async def run(self, args: list[str], out: Path, confine: Callable[[], None]) -> tuple[int, bytes]:
        to_file = 'exec "$0" "$@" > "$KB_OUT"'
        argv = self.wrap(["/bin/sh", "-c", to_file, self.cli, *args])
        rc, _, err = await procs.capture(
            argv,
            env={**self.env, "KB_OUT": str(out)},
            cwd=str(self.cwd),
            timeout_s=CLI_TIMEOUT_S,
            confine=confine,
            stop=self.ctx.stop,
        )
        return rc, err


def session_id_of(exported: bytes) -> str | None:
    """The session's id in `kilo export`'s JSON (`info.id`)."""
    try:
        data = orjson.loads(exported[exported.find(b"{") :])
    except orjson.JSONDecodeError:
        return None
    info = data.get("info") if isinstance(data, dict) else None
    sid = info.get("id") if isinstance(info, dict) else None
    return sid if isinstance(sid, str) and sid.startswith("ses_") else None


async def import_parent(cli: Cli, confine: Callable[[], None]) -> str | None:
    """The parent's session imported into this agent's HOME; its id (None: the parent kept none — it ended before
    its agent ran — and the agent starts a new session, told so in the log)."""
    ctx = cli.ctx
    parent = ctx.record.parent_job_id
    if not parent:
        return None
    blob = await artifact_store(ctx.settings).get(parent, SESSION_ARTIFACT)
    try:
        opened = await asyncio.to_thread(secret_box(ctx.settings).open, parent, (blob or b"").decode(), SCOPE)
    except (SealBroken, ValueError) as exc:
        await ctx.log.line("runner", f"job {parent}'s session does not open ({type(exc).__name__})", level="warn")
        opened = {}
    if "session" not in opened:
        await ctx.log.line("runner", f"job {parent} kept no session: the agent starts a new one", level="warn")
        return None
    path = cli.home / "parent-session.json"
    await asyncio.to_thread(path.write_text, opened["session"])
    rc, err = await cli.run(["import", str(path)], cli.home / "import.out", confine)
    ctx.check_stop()
    if rc != 0:
        said = ctx.redact(err.decode(errors="replace")).strip()[-300:]
        await ctx.log.line("runner", f"kilo import failed ({rc}): {said}; the agent starts a new session", level="warn")
        return None
    await ctx.log.line("runner", f"continuing the session of job {parent}")
    return opened["id"]


async def export(cli: Cli, confine: Callable[[], None], session_id: str | None) -> None:
    """The session as the CLI exports it, redacted, on the job's context until the job keeps it (best effort: a
    job whose session could not be exported ends all the same; its follow-up starts a new session)."""
    ctx = cli.ctx
    if session_id is None:
        return
    out = cli.home / "session-export.json"
    rc, err = await cli.run(["export", session_id], out, confine)
    exported = await asyncio.to_thread(out.read_bytes) if out.exists() else b""
    out.unlink(missing_ok=True)
    if rc != 0 or session_id_of(exported) != session_id:
        said = ctx.redact(err.decode(errors="replace")).strip()[-300:]
        await ctx.log.line("runner", f"session not kept: kilo export exited {rc}: {said}", level="warn")
        return
    ctx.session = (session_id, ctx.redact(exported[exported.find(b"{") :].decode(errors="replace")))


async def keep(ctx: JobContext, env: dict[str, str]) -> None:
    """What a follow-up continues from, sealed for this job alone beside its artifacts: the exported session
    (if the agent ran) and the job's secrets (deleted from its record at its end; a follow-up runs with them)."""
    values = {"env": orjson.dumps(env).decode()}
    if ctx.session is not None:
        values["id"], values["session"] = ctx.session
    try:
        sealed = await asyncio.to_thread(secret_box(ctx.settings).seal, ctx.job_id, values, SCOPE)
        await artifact_store(ctx.settings).put(ctx.job_id, SESSION_ARTIFACT, sealed.encode())
    except Exception as exc:  # the job ends all the same; it cannot be followed up
        logger.warning("conversation not kept", extra={"job_id": ctx.job_id, "error": type(exc).__name__})
        await ctx.log.line("runner", f"conversation not kept ({type(exc).__name__})", level="warn")
        return
    if ctx.session is not None:
        await ctx.log.line("runner", "session kept for follow-ups")
