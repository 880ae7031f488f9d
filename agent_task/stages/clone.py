"""Stage 1: the repository checked, the job's repository token chosen (profileEnv's, else a GitHub App
installation token minted for this job alone), and a fresh clone into the workspace."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent_task import app_token, procs
from agent_task.context import JobContext, JobEnded, Workspace
from agent_task.git import GitEnv, clone_argv
from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.catalogue import AgentSpec
from kilo_bridge.jobs.policy import LOOPBACK_HOSTS, RepoRef, blocked_address, check_repo_url, repo_token
from kilo_bridge.jobs.reasons import EndReason


@dataclass(slots=True)
class Checkout:
    repo: RepoRef
    dir: Path
    base: str  # the branch cloned (the pull request's base)
    git: GitEnv
    token: str | None  # what git authenticates with (never in the agent's environment)
    git_config: bytes  # the clone's own config, restored before the runner's git commands

    async def git_cmd(self, *args: str) -> tuple[int, bytes, bytes]:
        return await procs.capture(self.git.argv(*args), env=self.git.env(), cwd=str(self.dir), timeout_s=120)


def checked_repo(ctx: JobContext) -> RepoRef:
    try:
        return check_repo_url(ctx.record.repo_url, ctx.settings)
    except BridgeError as exc:
        raise JobEnded("failed", EndReason.REPO_REFUSED, exc.message) from None


def pr_target(ctx: JobContext, host: str) -> bool:
    return host == "github.com" or (ctx.settings.repo_allow_local and host in LOOPBACK_HOSTS)


async def repository_token(
    ctx: JobContext, repo: RepoRef, spec: AgentSpec, profile_env: dict[str, str]
) -> tuple[str | None, str | None]:
    """(the token git uses, the App token minted for this job — revoked at its end — or None)."""
    token = repo_token(profile_env)
    if token is not None or not pr_target(ctx, repo.host):
        return token, None
    minted = await app_token.mint(ctx.settings, repo, writes=spec.after == "pull_request")
    if minted:
        ctx.add_secret(minted)
        await ctx.log.line("runner", "repository token: a GitHub App installation token for this repository")
    return minted, minted


async def clone(ctx: JobContext, repo: RepoRef, token: str | None, ws: Workspace) -> Checkout:
    st, record = ctx.settings, ctx.record
    git = GitEnv.create(ws.private, token, st.repo_allow_local, git_dir=ws.git_dir)
    git.host = urlsplit(repo.url).netloc.rpartition("@")[2]  # the one host askpass answers for
    await ctx.enter("cloning", 5)
    if not repo.local:
        why = await asyncio.to_thread(blocked_address, repo.host, st)
        if why:
            raise JobEnded("failed", EndReason.REPO_REFUSED, why)
    streamed = await ctx.stream(clone_argv(git, repo.url, ws.repo, record.base_branch), git.env(), str(ws.root), "git")
    if not streamed.ok:
        raise JobEnded("failed", EndReason.CLONE_FAILED, "git clone failed: " + streamed.last())
    git.work_tree = ws.repo
    checkout = Checkout(repo, ws.repo, "", git, token, (git.git_dir / "config").read_bytes())
    base = record.base_branch
    if base is None:
        rc, out, _ = await checkout.git_cmd("rev-parse", "--abbrev-ref", "HEAD")
        base = out.decode().strip() if rc == 0 else "main"
    checkout.base = base
    return checkout
