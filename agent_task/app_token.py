"""The runner's GitHub App hooks: a job on a repository where the App is installed gets an installation token
minted for that repository alone (write for agents that open a pull request, read for report agents), held
in this process only and revoked when the job ends; a job started from GitHub (a `/kilo` comment, a pull
request review) reports its outcome there."""

from __future__ import annotations

import contextlib
import logging

from kilo_bridge.config import Settings
from kilo_bridge.github.app import COMMENT, READ, WRITE, GitHubApp, GitHubAppError, configured
from kilo_bridge.jobs.policy import RepoRef
from kilo_bridge.jobs.record import JobRecord

logger = logging.getLogger(__name__)


async def mint(settings: Settings, repo: RepoRef, writes: bool) -> str | None:
    """The job's installation token, or None when no App is configured or it is not installed there."""
    if not configured(settings) or not (repo.owner and repo.name):
        return None
    try:
        minted = await GitHubApp(settings).installation_token(repo.owner, repo.name, WRITE if writes else READ)
    except GitHubAppError as exc:
        logger.info("no installation token", extra={"error": exc.message})
        return None
    return minted.token


async def revoke(settings: Settings, token: str) -> None:
    with contextlib.suppress(GitHubAppError):
        await GitHubApp(settings).revoke(token)


def outcome_text(
    record: JobRecord, status: str, reason: str | None, error: str | None, pr_url: str | None, summary: str
) -> str:
    if status == "succeeded":
        return f"Pull request: {pr_url}" if pr_url else (summary or "Done: no change was needed.")
    return f"Job `{record.id}` {status}" + (f" ({reason})" if reason else "") + (f": {error}" if error else ".")


async def report(settings: Settings, record: JobRecord, repo: RepoRef, text: str) -> None:
    """The job's last word on its issue or pull request (`notify` = `comment:<n>` or `review:<n>`)."""
    kind, _, number = (record.notify or "").partition(":")
    if not (configured(settings) and repo.owner and repo.name and number.isdigit()):
        return
    app = GitHubApp(settings)
    try:
        token = (await app.installation_token(repo.owner, repo.name, COMMENT)).token
    except GitHubAppError as exc:
        logger.warning("job outcome not reported", extra={"job_id": record.id, "error": exc.message})
        return
    try:
        if kind == "review":
            await app.upsert_review_comment(token, repo.owner, repo.name, int(number), text)
        else:
            await app.comment(token, repo.owner, repo.name, int(number), text)
    except GitHubAppError as exc:
        logger.warning("job outcome not reported", extra={"job_id": record.id, "error": exc.message})
    finally:
        await revoke(settings, token)
