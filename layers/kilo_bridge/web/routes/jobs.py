"""Agent jobs: run-agent, the agent catalogue, job status, live logs, cancel, list and artifacts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.artifacts import CONTENT_TYPES
from kilo_bridge.jobs.models import (
    AgentList,
    Approval,
    ArtifactLink,
    DeployStep,
    FollowUpAccepted,
    FollowUpRequest,
    JobList,
    JobLogEnd,
    JobLogLine,
    JobLogStatus,
    JobMessage,
    JobMessageAccepted,
    JobResult,
    JobView,
    PhaseTiming,
    RunAgentAccepted,
    RunAgentRequest,
    ThreadJob,
)
from kilo_bridge.jobs.record import JOB_ID_PATTERN, STATUSES, JobRecord
from kilo_bridge.jobs.service import END_ID, IDEMPOTENCY_MAX, IDEMPOTENCY_PATTERN, JobDetails, JobService
from kilo_bridge.jobs.story import duration_ms, outcome, phases
from kilo_bridge.platform.clock import iso
from kilo_bridge.platform.redis import StoreUnavailable
from kilo_bridge.platform.resp import RedisError
from kilo_bridge.web.errors import ApiError, error_json
from kilo_bridge.web.models import ErrorResponse
from kilo_bridge.web.routing import Api, api_base, json_response, request_id, services
from kilo_bridge.web.sse import sse_response

router = Api(path_params={"id": {"type": "string", "pattern": JOB_ID_PATTERN}})
JOB_PATH = "/api/kilo/job/{id}"
LIST_MAX = 200


def jobs(request: Request) -> JobService:
    return services(request).jobs


def caller(request: Request) -> str | None:
    return request.scope["state"].get("caller")  # type: ignore[no-any-return]


def job_url(base: str, job_id: str, suffix: str = "") -> str:
    return base + JOB_PATH.format(id=job_id) + suffix


def job_view(details: JobDetails, base: str) -> JobView:
    r = details.record
    thread = [ThreadJob(job_id=t.id, status=t.shown_status, prompt=t.prompt, cost_usd=_cost(t)) for t in details.thread]
    links = {
        a.name: ArtifactLink(key=a.key, url=a.url or job_url(base, r.id, f"/artifacts/{a.name}"), bytes=a.bytes)
        for a in details.artifacts
    }
    return JobView(
        id=r.id,
        status=r.shown_status,
        phase=r.phase,
        progress=r.progress,
        agent=r.agent,
        repo_url=r.repo_url,
        base_branch=r.base_branch,
        model=r.model,
        prompt=r.prompt,
        dry_run=r.dry_run,
        timeout_ms=r.timeout_ms,
        max_cost_usd=r.max_cost_usd,
        network=r.network,
        deploy=DeployStep.model_validate(r.deploy) if r.deploy is not None else None,
        require_approval=r.require_approval,
        approval=approval_view(r),
        key_id=r.key_id,
        attempt=r.attempt,
        cancel_requested=r.cancel_requested,
        created_at=iso(r.created_ms) or "",
        started_at=iso(r.started_ms),
        heartbeat_at=iso(r.heartbeat_ms),
        finished_at=iso(r.finished_ms),
        duration_ms=duration_ms(r),
        phases=[PhaseTiming(phase=p.name, started_at=iso(p.started_ms), duration_ms=p.duration_ms) for p in phases(r)],
        outcome=outcome(r, details.after),
        reason=r.reason,
        error=r.error,
        result=JobResult.model_validate(r.result) if r.result is not None else None,
        artifacts=links,
        log_url=job_url(base, r.id, "/logs"),
        parent_job_id=r.parent_job_id,
        thread=thread,
        thread_cost_usd=round(sum(t.cost_usd for t in thread), 6),
    )


def approval_view(r: JobRecord) -> Approval | None:
    if r.approval is None:
        return None
    return Approval.model_validate(r.approval | {"decision": r.decision})


def _cost(record: JobRecord) -> float:
    return float((record.result or {}).get("costUsd") or 0.0)


@router.route(
    "POST",
    "/api/kilo/run-agent",
    summary="Start an agent job",
    tags=("agents",),
    body=RunAgentRequest,
    response=RunAgentAccepted,
    status=202,
    errors=(401, 409, 422, 429, 503),
    headers={
        "Idempotency-Key": (
            "Retrying with the same key and body returns the same job; another body: "
            "409. Anything but 1-200 printable characters: 400.",
            {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_MAX, "pattern": IDEMPOTENCY_PATTERN},
        )
    },
    description="Queues a job that clones the repository, runs the named Kilo agent on it and (unless "
    "`dryRun`) opens a pull request. Answers at once with the job id. An `Idempotency-Key` header makes "
    "a retried request return the same job (same key with another body: 409).",
)
async def run_agent(request: Request, body: RunAgentRequest) -> Response:
    submitted = await jobs(request).submit(
        body, caller(request), request.headers.get("idempotency-key"), request_id(request)
    )
    url = job_url(api_base(request), submitted.job_id)
    accepted = RunAgentAccepted(job_id=submitted.job_id, status=submitted.status, status_url=url)
    return json_response(accepted, 202, headers={"Location": url})


@router.route(
    "POST",
    JOB_PATH + "/follow-up",
    summary="Follow up a finished job",
    tags=("agents",),
    body=FollowUpRequest,
    response=FollowUpAccepted,
    status=202,
    errors=(401, 404, 409, 422, 429, 503),
    description="Queues the next job of a finished job's conversation: the same agent, repository, model, "
    "network and secrets; it continues the parent's Kilo CLI session (exported at the parent's end, sealed) on "
    "the branch the thread pushed (a fresh checkout when nothing was pushed), and pushes to that branch: an open "
    "pull request is updated, never duplicated. Another key's job: 404; a job still running: 409.",
)
async def follow_up(request: Request, body: FollowUpRequest) -> Response:
    parent_id = request.path_params["id"]
    submitted = await jobs(request).follow_up(parent_id, body, caller(request), request_id(request))
    url = job_url(api_base(request), submitted.job_id)
    accepted = FollowUpAccepted(job_id=submitted.job_id, parent_job_id=parent_id, status_url=url)
    return json_response(accepted, 202, headers={"Location": url})


@router.route(
    "POST",
    JOB_PATH + "/messages",
    summary="Tell a running job's agent something",
    tags=("agents",),
    body=JobMessage,
    response=JobMessageAccepted,
    status=202,
    errors=(401, 404, 409, 422),
    description="The agent gets `text` as a user message at its next step (its next model request carries it; "
    "the live log shows it, `source: user`). The answer waits up to `waitMs` and says whether it was delivered or "
    "the job ended first. A job that has ended: 409 (follow it up instead); another key's job: 404.",
)
async def say(request: Request, body: JobMessage) -> Response:
    job_id = request.path_params["id"]
    message_id, delivery = await jobs(request).say(job_id, body.text, caller(request), body.wait_ms / 1000)
    return json_response(JobMessageAccepted(message_id=message_id, job_id=job_id, delivery=delivery), 202)


@router.route("GET", "/api/kilo/agents", summary="The agents a job may run", tags=("agents",), response=AgentList)
async def agents(request: Request) -> AgentList:
    return jobs(request).agents()


@router.route(
    "GET",
    "/api/kilo/jobs",
    summary="Recent jobs, newest first",
    tags=("agents",),
    response=JobList,
    errors=(422, 503),
    query={
        "status": ("only jobs in this status", {"type": "string", "enum": list(STATUSES)}),
        "limit": ("at most this many (default 50)", {"type": "integer", "minimum": 1, "maximum": LIST_MAX}),
    },
)
async def list_jobs(request: Request) -> JobList:
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(422, "invalid_request", f"status: one of {', '.join(STATUSES)}.")
    raw_limit = request.query_params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_MAX:
        raise ApiError(422, "invalid_request", f"limit: an integer from 1 to {LIST_MAX}.")
    found = await jobs(request).list(caller(request), status, int(raw_limit))
    base = api_base(request)
    return JobList(jobs=[job_view(d, base) for d in found])


@router.route(
    "GET",
    JOB_PATH,
    summary="A job: status, phase, progress, result, artifacts",
    tags=("agents",),
    response=JobView,
    errors=(404, 503),
)
async def get_job(request: Request) -> JobView:
    return job_view(await jobs(request).get(request.path_params["id"], caller(request)), api_base(request))


@router.route(
    "DELETE",
    JOB_PATH,
    summary="Cancel a job",
    tags=("agents",),
    response=JobView,
    status=202,
    errors=(404, 409, 503),
    description="A queued job is cancelled at once; a running one is stopped by its runner within "
    "seconds (its process tree killed), then shows `cancelled`.",
)
async def cancel_job(request: Request) -> JobView:
    return job_view(await jobs(request).cancel(request.path_params["id"], caller(request)), api_base(request))


_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")  # a Redis stream entry id: what `log` events carry as `id`


@router.route(
    "GET",
    JOB_PATH + "/logs",
    summary="A job's log and status, live, as server-sent events",
    tags=("agents",),
    errors=(404, 503),
    events={"status": JobLogStatus, "log": JobLogLine, "end": JobLogEnd, "error": ErrorResponse},
    description="Opens at once with a `status` event (the job's status, phase, progress and heartbeat), then "
    "the log so far and live lines as the job writes them, a `status` event whenever the job's state changes, "
    "and `end` (id `end`) when the job has ended; `: keep-alive` comments while nothing happens. Each `log` "
    "event has an `id`: a client that reconnects with `Last-Event-ID` (as browsers' EventSource do) gets the "
    "lines after it: the stream closes itself after `KILO_STREAM_MAX_S` (under API Gateway's 15-minute limit) "
    "without `end`, and the reconnect carries on. A reconnect after `end` is answered 204 (No Content), which "
    "stops an EventSource.",
    headers={
        "Last-Event-ID": (
            "Resume after this log line (the `id` of a `log` event), or `end`; other values are ignored.",
            {"type": "string", "maxLength": 64},
        )
    },
)
async def job_logs(request: Request) -> Response:
    svc = jobs(request)
    job_id, who, rid = request.path_params["id"], caller(request), request_id(request)
    resume = request.headers.get("last-event-id", "")
    if resume == END_ID and (await svc.get(job_id, who)).record.finished:
        return Response(status_code=204)  # it has seen the end: EventSource stops on a 204
    settings = services(request).settings
    # The stream ends itself after KILO_STREAM_MAX_S, before API Gateway (15 minutes) and the function's own
    # timeout cut it: a clean close the client resumes from with Last-Event-ID, not a killed invocation.
    deadline = asyncio.get_running_loop().time() + settings.kilo_stream_max_s
    lines = svc.follow_log(job_id, who, resume if _STREAM_ID.fullmatch(resume) else "0-0", until=deadline)
    # The first step (the job's status) comes at once, so an unknown job is a plain 404, not an event stream.
    try:
        first = await anext(lines)
    except (RedisError, OSError) as exc:
        raise StoreUnavailable() from exc

    async def events() -> AsyncIterator[dict[str, str]]:
        item = first
        try:
            while True:
                kind, model, line_id = item
                event = {"event": kind, "data": model.model_dump_json(by_alias=True)}
                if line_id:
                    event["id"] = line_id
                yield event
                if kind == "end":
                    return
                try:
                    item = await anext(lines)
                except StopAsyncIteration:  # KILO_STREAM_MAX_S passed: closed without `end`, the client resumes
                    return
        except (RedisError, OSError, BridgeError):
            yield {"event": "error", "data": error_json(StoreUnavailable(), rid).decode()}
        finally:
            await lines.aclose()  # a client that hung up: the Redis reads stop with it

    return sse_response(events(), settings.sse_keepalive_s)


@router.route(
    "GET",
    JOB_PATH + "/artifacts/{name}",
    summary="A job artifact (local storage)",
    tags=("agents",),
    errors=(404,),
    description="`log.jsonl`, `diff.patch` or `result.json`. With S3 storage the job's artifact links "
    "are presigned URLs instead.",
)
async def artifact(request: Request) -> Response:
    name = request.path_params["name"]
    path = await jobs(request).artifact_path(request.path_params["id"], name, caller(request))
    return FileResponse(path, media_type=CONTENT_TYPES[name], headers={"Cache-Control": "no-store"})


async def _decide(request: Request, decision: str, admin: bool) -> JobView:
    who = None if admin else caller(request)  # the admin decides for any job; a key for its own only
    details = await jobs(request).decide(request.path_params["id"], who, decision)
    return job_view(details, api_base(request))


@router.route(
    "POST",
    JOB_PATH + "/approve",
    summary="Approve a deploy awaiting approval",
    tags=("agents",),
    response=JobView,
    errors=(401, 404, 409),
    audit="job.approve",
    description="The runner of a `deploy` job in `awaiting_approval` runs its deploy command. Taken once, by the "
    "key that started the job (another key: 404), while the window (DEPLOY_APPROVAL_TTL_S) is open.",
)
async def approve_job(request: Request) -> JobView:
    return await _decide(request, "approved", admin=False)


@router.route(
    "POST",
    JOB_PATH + "/reject",
    summary="Reject a deploy awaiting approval",
    tags=("agents",),
    response=JobView,
    errors=(401, 404, 409),
    audit="job.reject",
    description="The job ends `cancelled` (`deploy_rejected`) without deploying. By the key that started it.",
)
async def reject_job(request: Request) -> JobView:
    return await _decide(request, "rejected", admin=False)


@router.route(
    "POST",
    "/api/kilo/admin/jobs/{id}/approve",
    summary="Approve any key's deploy awaiting approval",
    tags=("admin",),
    response=JobView,
    auth="admin",
    errors=(404, 409),
    audit="job.approve",
)
async def admin_approve_job(request: Request) -> JobView:
    return await _decide(request, "approved", admin=True)


@router.route(
    "POST",
    "/api/kilo/admin/jobs/{id}/reject",
    summary="Reject any key's deploy awaiting approval",
    tags=("admin",),
    response=JobView,
    auth="admin",
    errors=(404, 409),
    audit="job.reject",
)
async def admin_reject_job(request: Request) -> JobView:
    return await _decide(request, "rejected", admin=True)
