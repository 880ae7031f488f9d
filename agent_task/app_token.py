"""The runner's GitHub App hooks: a job on a repository where the App is installed gets an installation token
minted for that repository alone (write for agents that open a pull request, read for report agents), held
in this process only and revoked when the job ends; a job started from GitHub (a `/kilo` comment, a pull
request review) reports its outcome there."""

from __future__ import annotations

import contextlib
import logging

from kilo_bridge.config import Settings
from kilo_bridge.github.app import COMMENT, READ, WRITE, GitHubApp, GitHubAppError, configured
from kilo_bridge.github.notify import reply_target
from kilo_bridge.jobs.policy import RepoRef
from kilo_bridge.jobs.record import JobRecord
from kilo_bridge.platform.security import REDACTED

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


SUMMARY_MAX = 500  # a short summary only: the job's page and artifacts hold the rest


def job_link(settings: Settings, job_id: str) -> str:
    """The job's page on this API when the runner knows the API's address, else its id alone."""
    base = settings.public_base_url or settings.bridge_url
    return f"[`{job_id}`]({base.rstrip('/')}/api/kilo/job/{job_id})" if base else f"`{job_id}`"


def short_summary(summary: str) -> str:
    """The agent's summary as GitHub may see it: the agent's text is not ours to publish. `summary` is what the
    runner kept after its redactor (the one that refuses a push with a secret in it) ran over it: anything it
    replaced means the text touched a secret, and none of it is posted; else one short paragraph, no markup
    that could hide text (HTML comments) or ping people."""
    if not summary or REDACTED in summary:
        return ""
    text = " ".join(summary.split())[:SUMMARY_MAX]
    return text.replace("<!--", "").replace("@", "@\u200b")


def outcome_text(
    record: JobRecord,
    status: str,
    reason: str | None,
    error: str | None,
    pr_url: str | None,
    summary: str,
    pushed: str | None = None,
) -> str:
    """A job's status and its link, for the issue or pull request that started it. The agent's free text (its
    error, a long summary) never goes there whole: the repository's readers may be the ones who wrote the
    text the agent read. A review job reports through its pull request review and check run (review.py).
    `pushed`: the branch its commit went to (a pull request's own, for a job on one)."""
    link = f"`{record.id}`"  # `report` makes it a link when the API's address is known
    if status == "succeeded":
        if pr_url:
            done = f"pull request {pr_url}" + (" updated" if record.branch else "")
        else:
            done = f"pushed to `{pushed}`." if pushed else "no change was made."
        head = f"Kilo Bridge job {link} succeeded: {done}"
    else:
        head = f"Kilo Bridge job {link} {status}" + (f" (`{reason}`)." if reason else ".")
    brief = short_summary(summary)
    return head + (f"\n\n> {brief}" if brief else "")


async def report(settings: Settings, record: JobRecord, repo: RepoRef, text: str) -> None:
    """The job's last word on its issue or pull request (`notify` = `comment:<n>`), or in the review comment's
    thread that started it (`review-comment:<n>:<comment id>`)."""
    target = reply_target(record.notify)
    if not (configured(settings) and repo.owner and repo.name and target):
        return
    number, reply_to = target
    text = text.replace(f"`{record.id}`", job_link(settings, record.id), 1)
    app = GitHubApp(settings)
    try:
        token = (await app.installation_token(repo.owner, repo.name, COMMENT)).token
    except GitHubAppError as exc:
        logger.warning("job outcome not reported", extra={"job_id": record.id, "error": exc.message})
        return
    try:
        if reply_to is None:
            await app.comment(token, repo.owner, repo.name, number, text)
        else:
            await app.reply(token, repo.owner, repo.name, number, reply_to, text)
    except GitHubAppError as exc:
        logger.warning("job outcome not reported", extra={"job_id": record.id, "error": exc.message})
    finally:
        await revoke(settings, token)
