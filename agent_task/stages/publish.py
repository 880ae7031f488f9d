"""Stage 3: the change the agent made, staged and diffed (the patch's leftovers removed), refused when it holds a
secret; then, for an agent that opens pull requests and a run that is not dry, committed to `kilo/<jobId>`,
pushed to the URL that was cloned, and proposed as a pull request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from agent_task.context import JobContext, JobEnded, Workspace
from agent_task.github import PullRequestError, open_pull_request
from agent_task.limits import MB, oversized
from agent_task.stages.clone import Checkout, pr_target
from kilo_bridge.jobs.catalogue import AgentSpec
from kilo_bridge.jobs.models import DiffStat, JobResult
from kilo_bridge.jobs.reasons import EndReason

MAX_DIFF_BYTES = 20_000_000


@dataclass(slots=True)
class Change:
    diff: bytes = b""
    stat: DiffStat = field(default_factory=DiffStat)
    files: list[str] = field(default_factory=list)


async def collect(checkout: Checkout, ws: Workspace, max_file_mb: int) -> Change:
    """Stage everything the agent changed; the binary diff, its stat and the file names. A file at the
    one-file limit (AGENT_MAX_FILE_MB) is refused before git hashes anything (found by lstat, no link followed)."""
    big = await asyncio.to_thread(oversized, checkout.dir, max_file_mb * MB)
    if big:
        name, size = big[0]
        raise JobEnded(
            "failed",
            EndReason.RESOURCE_LIMIT,
            f"AGENT_MAX_FILE_MB ({max_file_mb} MB): {name} is {size // MB} MB; the change was not staged",
        )
    checkout.git.reseal(checkout.git_config)
    await checkout.git_cmd("add", "-A")
    patch = ws.private / "diff.patch"
    await checkout.git_cmd("diff", "--cached", "--binary", f"--output={patch}")
    _, numstat, _ = await checkout.git_cmd("diff", "--cached", "--numstat")
    change = Change()
    for line in numstat.decode(errors="replace").splitlines():
        added, deleted, name = ([*line.split("\t", 2), "", ""])[:3]
        change.files.append(name)
        change.stat.insertions += int(added) if added.isdigit() else 0
        change.stat.deletions += int(deleted) if deleted.isdigit() else 0
    change.stat.files = len(change.files)
    change.files = change.files[:1000]
    change.diff = patch.read_bytes()[:MAX_DIFF_BYTES] if patch.exists() else b""
    return change


def remove_beneath(root: Path, name: str) -> None:
    """Remove root/name when it is a file reached through real directories only: a directory the agent
    replaced with a link (to anywhere on the host) is never followed, and the entry itself, a link or a file,
    is unlinked, never its target."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    with contextlib.suppress(OSError):  # gone, or reached through a link: left alone
        fd = os.open(root, flags)
        try:
            for part in parts[:-1]:
                inner = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = inner
            if not stat.S_ISDIR(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
                os.unlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)


async def the_change(ctx: JobContext, checkout: Checkout, ws: Workspace, rejects: list[str]) -> Change:
    for name in rejects:
        remove_beneath(checkout.dir, name)
    change = await collect(checkout, ws, ctx.settings.agent_max_file_mb)
    if ctx.redact.found_in(change.diff.decode(errors="replace")):
        raise JobEnded("failed", EndReason.SECRET_IN_DIFF, "the change contains a value from profileEnv; not pushed")
    return change


def why_not_pushed(ctx: JobContext, spec: AgentSpec, change: Change) -> str | None:
    if ctx.record.dry_run:
        return "dry run"
    if spec.after != "pull_request":
        return "report-only agent"
    if not change.files:
        return "no changes"
    return None


async def publish(ctx: JobContext, spec: AgentSpec, checkout: Checkout, change: Change, result: JobResult) -> None:
    """Commit, push and open the pull request; the result gets the commit, branch and pull request URL."""
    st, record = ctx.settings, ctx.record
    await ctx.enter("pushing", 85)
    branch = f"kilo/{ctx.job_id}"
    title = f"{spec.name}: {(record.prompt or 'automated change').splitlines()[0][:60]}"
    message = f"{title}\n\nKilo Bridge job {ctx.job_id}"
    for args in (("checkout", "-q", "-b", branch), ("commit", "-q", "-m", message)):
        rc, _, err = await checkout.git_cmd(*args)
        if rc != 0:
            raise JobEnded("failed", EndReason.COMMIT_FAILED, ctx.redact(err.decode(errors="replace"))[-500:])
    _, sha, _ = await checkout.git_cmd("rev-parse", "HEAD")
    result.commit, result.branch = sha.decode().strip(), branch
    git = checkout.git
    streamed = await ctx.stream(
        # The URL that was cloned, never a remote the agent could have re-pointed (pushurl, insteadOf).
        git.argv("push", "--porcelain", checkout.repo.url, f"HEAD:refs/heads/{branch}"),
        git.env(),
        str(checkout.dir),
        "git",
    )
    if not streamed.ok:
        raise JobEnded("failed", EndReason.PUSH_FAILED, "git push failed: " + streamed.last())
    await ctx.log.line("runner", f"pushed {branch}")
    repo = checkout.repo
    if not (pr_target(ctx, repo.host) and repo.owner and repo.name):
        return
    if not checkout.token:
        raise JobEnded(
            "failed",
            EndReason.PR_FAILED,
            "no GITHUB_TOKEN in profileEnv (nor a GitHub App installed) for the pull request",
        )
    stat = change.stat
    body = (
        f"{ctx.agent.summary()}\n\n---\nOpened by Kilo Bridge job `{ctx.job_id}` (agent "
        f"`{spec.name}`, {len(change.files)} files, +{stat.insertions}/-{stat.deletions})."
    )
    try:
        result.pr_url = await open_pull_request(
            st.github_api_url,
            checkout.token,
            repo.owner,
            repo.name,
            head=branch,
            base=checkout.base,
            title=title,
            body=ctx.redact(body),
        )
    except PullRequestError as exc:
        raise JobEnded(
            "failed", EndReason.PR_FAILED, f"branch {branch} pushed, pull request not opened: {exc}"
        ) from None
    await ctx.log.line("runner", f"pull request {result.pr_url}")
