"""Stage 4: the job's end. The App's token revoked and the outcome reported where a GitHub job came from (before
the job shows as ended, so whoever sees it ended finds its outcome there too); the artifacts (log, diff, result)
stored redacted; the workspace removed; the final state written once, retried until Redis answers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from agent_task import app_token, review
from agent_task.context import JobContext, Workspace
from kilo_bridge.jobs.artifacts import artifact_store
from kilo_bridge.jobs.models import JobResult
from kilo_bridge.jobs.policy import check_repo_url
from kilo_bridge.jobs.workspace import remove_workspace
from kilo_bridge.money import usd
from kilo_bridge.observability import get_logger

logger = get_logger()


def fill(ctx: JobContext, result: JobResult) -> None:
    """Steps from the agent's events; tokens and cost from the job key's meter alone (what the agent prints
    is its own to forge); the egress its proxy refused."""
    a, metered = ctx.agent, ctx.metered
    result.steps = a.steps
    result.input_tokens = metered.input_tokens if metered else 0
    result.output_tokens = metered.output_tokens if metered else 0
    result.cost_usd = round(usd(metered.spend_nusd), 6) if metered else 0.0
    result.egress_denied = ctx.egress_denied
    result.summary = ctx.redact(result.summary or a.summary())


async def report_on_github(
    ctx: JobContext, minted: str | None, status: str, reason: str | None, error: str | None, result: JobResult
) -> None:
    """The App's token revoked; a job started from GitHub reports its outcome on its issue or pull request."""
    try:
        if minted:
            await app_token.revoke(ctx.settings, minted)
        if ctx.record.notify:
            repo = check_repo_url(ctx.record.repo_url, ctx.settings)
            if review.pr_number(ctx) is not None:  # a review's outcome is its review and its check run
                link = app_token.job_link(ctx.settings, ctx.job_id)
                await review.report(ctx, repo, status, reason, result, link)
                return
            text = app_token.outcome_text(
                ctx.record, status, reason, error, result.pr_url, result.summary, pushed=result.branch
            )
            await app_token.report(ctx.settings, ctx.record, repo, ctx.redact(text)[:60_000])
    except Exception as exc:  # best effort: the job has ended either way
        logger.warning("github outcome not reported", extra={"job_id": ctx.job_id, "error": type(exc).__name__})


async def finish(
    ctx: JobContext, ws: Workspace, status: str, reason: str | None, error: str | None, result: JobResult, diff: bytes
) -> bool:
    await ctx.enter("uploading", 95)
    sizes: dict[str, int] = {}
    store = artifact_store(ctx.settings)
    log_bytes = await ctx.log.close(ctx.patience_left())
    result_bytes = orjson.dumps(
        {"jobId": ctx.job_id, "status": status, "reason": reason, "error": error, **result.model_dump(by_alias=True)},
        option=orjson.OPT_INDENT_2,
    )
    for name, data in (("log.jsonl", log_bytes), ("diff.patch", diff), ("result.json", result_bytes)):
        try:
            await store.put(ctx.job_id, name, ctx.redact(data.decode(errors="replace")).encode())
            sizes[name] = len(data)
        except Exception as exc:  # the job still ends; the missing artifact is said in its error
            logger.warning(
                "artifact upload failed", extra={"job_id": ctx.job_id, "artifact": name, "error": type(exc).__name__}
            )
            error = ((error + "; ") if error else "") + f"artifact {name} not stored ({type(exc).__name__})"
    fields: dict[str, Any] = {"result": result.model_dump(by_alias=True), "artifacts": sizes, "progress": "100"}
    if ctx.metered is not None or not ctx.agent_started:  # else unknown: the reservation is charged
        fields["costNusd"] = str(ctx.metered.spend_nusd if ctx.metered else 0)
    if reason:
        fields["reason"] = reason
    if error:
        fields["error"] = error
    # Gone before the job is seen ended: the agent's HOME holds output never redacted.
    await asyncio.to_thread(remove_workspace, ctx.settings, ctx.job_id)
    return await finish_once(ctx, status, fields)


async def finish_once(ctx: JobContext, status: str, fields: dict[str, Any]) -> bool:
    """The job's end, retried until Redis answers. A retry after a call whose reply was lost finds the job
    already ended by it: that is our end, not another attempt's."""
    retried = False

    async def end() -> bool:
        nonlocal retried
        again, retried = retried, True
        if await ctx.jobs.finish(ctx.job_id, ctx.owner, ctx.attempt, status, fields):
            return True
        if not again:
            return False
        record = await ctx.jobs.get(ctx.job_id)
        return record is not None and (record.status, record.attempt) == (status, ctx.attempt)

    return await ctx.until_redis_answers("finish", end)
