"""Agent jobs: run-agent, the agent catalogue, job status, live logs, cancel, list and artifacts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from kilo_bridge.artifacts import CONTENT_TYPES
from kilo_bridge.errors import ApiError, store_unavailable
from kilo_bridge.job_service import IDEMPOTENCY_MAX, JobService
from kilo_bridge.models import (
    AgentList,
    ErrorResponse,
    JobList,
    JobLogEnd,
    JobLogLine,
    JobView,
    RunAgentAccepted,
    RunAgentRequest,
)
from kilo_bridge.routes import api
from kilo_bridge.routes.generation import services, sse_response
from kilo_bridge.routing import json_response, request_id

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")


def jobs(request: Request) -> JobService:
    return services(request).jobs


def caller(request: Request) -> str | None:
    return request.scope["state"].get("caller")


def api_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@api.route("POST", "/api/kilo/run-agent", summary="Start an agent job", tags=("agents",), body=RunAgentRequest,
           response=RunAgentAccepted, status=202, errors=(401, 409, 422, 429, 503),
           headers={"Idempotency-Key": ("Retrying with the same key and body returns the same job; another body: "
                                        "409. Anything but 1-200 printable characters: 400.",
                                        {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_MAX})},
           description="Queues a job that clones the repository, runs the named Kilo agent on it and (unless "
           "`dryRun`) opens a pull request. Answers at once with the job id. An `Idempotency-Key` header makes "
           "a retried request return the same job (same key with another body: 409).")
async def run_agent(request: Request, body: RunAgentRequest) -> Response:
    accepted = await jobs(request).submit(body, caller(request), request.headers.get("idempotency-key"),
                                          request_id(request), api_base(request))
    return json_response(accepted, 202, headers={"Location": accepted.status_url})


@api.route("GET", "/api/kilo/agents", summary="The agents a job may run", tags=("agents",), response=AgentList)
async def agents(request: Request) -> AgentList:
    return jobs(request).agents()


@api.route("GET", "/api/kilo/jobs", summary="Recent jobs, newest first", tags=("agents",), response=JobList,
           errors=(422, 503), query={"status": "only jobs in this status", "limit": "at most this many (1-200)"})
async def list_jobs(request: Request) -> JobList:
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(422, "invalid_request", f"status: one of {', '.join(STATUSES)}.")
    raw_limit = request.query_params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise ApiError(422, "invalid_request", "limit: an integer from 1 to 200.")
    return await jobs(request).list(caller(request), status, int(raw_limit), api_base(request))


@api.route("GET", "/api/kilo/job/{id}", summary="A job: status, phase, progress, result, artifacts",
           tags=("agents",), response=JobView, errors=(404, 503))
async def get_job(request: Request) -> JobView:
    return await jobs(request).get(request.path_params["id"], caller(request), api_base(request))


@api.route("DELETE", "/api/kilo/job/{id}", summary="Cancel a job", tags=("agents",), response=JobView,
           status=202, errors=(404, 409, 503),
           description="A queued job is cancelled at once; a running one is stopped by its runner within "
           "seconds (its process tree killed), then shows `cancelled`.")
async def cancel_job(request: Request) -> JobView:
    return await jobs(request).cancel(request.path_params["id"], caller(request), api_base(request))


_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")  # a Redis stream entry id: what `log` events carry as `id`


@api.route("GET", "/api/kilo/job/{id}/logs", summary="A job's log, live, as server-sent events",
           tags=("agents",), errors=(404, 503), events={"log": JobLogLine, "end": JobLogEnd, "error": ErrorResponse},
           description="The log so far, then live lines as the job writes them; ends with `end` when the job "
           "has ended. Each `log` event has an `id`: a client that reconnects with `Last-Event-ID` (as browsers' "
           "EventSource do) gets the lines after it, e.g. past API Gateway's 15-minute stream limit.",
           headers={"Last-Event-ID": ("Resume after this log line (the `id` of a `log` event); other values are "
                                      "ignored.", {"type": "string", "maxLength": 64})})
async def job_logs(request: Request) -> Response:
    svc = jobs(request)
    job_id, who, rid = request.path_params["id"], caller(request), request_id(request)
    resume = request.headers.get("last-event-id", "")
    lines = svc.follow_log(job_id, who, resume if _STREAM_ID.fullmatch(resume) else "0-0")
    # The first step runs now, so an unknown job is a plain 404, not an event stream.
    try:
        first = await anext(lines)
    except (RedisError, OSError) as exc:
        raise store_unavailable() from exc

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
                item = await anext(lines)
        except (RedisError, OSError, ApiError):
            error = store_unavailable()
            yield {"event": "error", "data": error.json_bytes(rid).decode()}

    return sse_response(events(), services(request).settings.sse_keepalive_s)


@api.route("GET", "/api/kilo/job/{id}/artifacts/{name}", summary="A job artifact (local storage)",
           tags=("agents",), errors=(404,),
           description="`log.jsonl`, `diff.patch` or `result.json`. With S3 storage the job's artifact links "
           "are presigned URLs instead.")
async def artifact(request: Request) -> Response:
    name = request.path_params["name"]
    path = await jobs(request).artifact_path(request.path_params["id"], name, caller(request))
    return FileResponse(path, media_type=CONTENT_TYPES[name], headers={"Cache-Control": "no-store"})
