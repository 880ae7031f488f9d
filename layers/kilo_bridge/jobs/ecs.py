"""AWS mode: SQS message → one ECS Fargate task per job (dispatcher), and ECS "Task State Change" →
the job failed when its task stopped without finishing it (finalizer)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson

from kilo_bridge.config import Settings
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.record import valid_job_id
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger

log = get_logger()


class DispatchError(RuntimeError):
    """The task could not be started; the message goes back to the queue (then to the DLQ).

    `reason` is ECS's own (a RunTask failure reason or an API error code and message); `retryable` says
    whether another attempt could succeed (throttling, capacity, a network error) or not (a missing cluster)."""

    def __init__(self, reason: str, *, retryable: bool = False, definite: bool = True) -> None:
        super().__init__(f"RunTask failed: {reason}")
        self.reason = reason
        self.retryable = retryable
        # ECS answered and started nothing (a failures list, a refused request): the next attempt needs a client
        # token of its own, as ECS answers a repeated token with the first call's outcome. Not definite (no
        # answer, a server error): the same token, so a call that did start a task returns that task.
        self.definite = definite


class DispatchBusy(RuntimeError):
    """Another dispatcher holds the job's live lease: retry the message later (it may still start the task)."""


# Worth another attempt: API-side trouble, and Fargate (or cluster) capacity that may free up in seconds.
_RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "ServerException", "ServiceUnavailableException", "RequestLimitExceeded"}
)
# Server-side errors: ECS may have acted before failing, so the retry keeps the client token.
_UNCERTAIN_CODES = frozenset({"ServerException", "ServiceUnavailableException", "InternalFailure"})
_CAPACITY_HINTS = ("capacity", "resource:", "agent", "throttl")
# A RunTask call with botocore's connect and read timeouts (platform/aws.py) fits in this; no attempt starts
# unless it does before the deadline.
_CALL_BUDGET_S = 20.0


def job_id_of_message(body: str) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    job_id = data.get("jobId") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) and valid_job_id(job_id) else None


async def dispatch(
    settings: Settings, jobs: JobStore, job_id: str, *, receive_count: int = 1, deadline: float | None = None
) -> str:
    """Start the job's task once, under a lease (jobs/lua/dispatch.lua).

    → "dispatched"; "skipped" (not queued, or its task already started: a redelivered message); "failed" (the
    message's last receive and RunTask still failing: the job fails with `dispatch_failed: <reason>` rather
    than waiting for the reaper). Raises DispatchBusy or DispatchError for a message to retry. `deadline`
    (time.monotonic()) bounds the RunTask retries: the invocation's own end.
    """
    mark = await jobs.mark_dispatched(job_id, int(settings.dispatch_lease_s * 1000))
    if mark == 0:
        log.info("dispatch skipped: job not queued or its task already started", extra={"job_id": job_id})
        return "skipped"
    if mark < 0:
        raise DispatchBusy(f"job {job_id}: another dispatcher holds the lease")
    try:
        arn = await _start_task(settings, jobs, job_id, deadline)
    except DispatchError as exc:
        if receive_count >= settings.agent_queue_max_receives:
            error = f"dispatch_failed: {exc.reason}"[:500]
            if await jobs.fail_unfinished(job_id, EndReason.DISPATCH_FAILED, error) in ("queued", "running"):
                log.warning("job failed: its task could not be started", extra={"job_id": job_id, "error": error})
                await jobs.count_failure_once(job_id)
                return "failed"
            return "skipped"
        await jobs.undispatch(job_id, mark)  # the retried message takes the lease at once
        raise
    except BaseException:
        await jobs.undispatch(job_id, mark)
        raise
    await jobs.set_task_arn(job_id, arn)
    log.info("task started", extra={"job_id": job_id, "task_arn": arn})
    return "dispatched"


def client_token(job_id: str, generation: int) -> str:
    """RunTask's idempotency token (up to 64 characters) for the job's `generation`-th definite failure."""
    return job_id if generation == 0 else f"{job_id}.{generation}"


async def _start_task(settings: Settings, jobs: JobStore, job_id: str, deadline: float | None) -> str:
    """RunTask, retried with jittered exponential backoff while the failure is retryable, the attempts last and
    the next attempt can finish before `deadline`. The client token (the job's, kept in its record) makes a
    retry of a call that may have started a task return that task; after a definite failure the job's token
    moves on, for this retry and a redelivered message's alike."""
    attempt = 0
    token = client_token(job_id, await jobs.dispatch_token(job_id))
    while True:
        attempt += 1
        try:
            return await asyncio.to_thread(_run_task, settings, job_id, token)
        except DispatchError as exc:
            if exc.definite:
                token = client_token(job_id, await jobs.next_dispatch_token(job_id))
            pause = random.uniform(0.5, 1.0) * settings.ecs_run_task_backoff_s * 2 ** (attempt - 1)  # noqa: S311
            out_of_time = deadline is not None and time.monotonic() + pause + _CALL_BUDGET_S > deadline
            if not exc.retryable or attempt >= settings.ecs_run_task_attempts or out_of_time:
                raise
            log.info("RunTask retried", extra={"job_id": job_id, "attempt": attempt, "reason": exc.reason})
            await asyncio.sleep(pause)


def _run_task(settings: Settings, job_id: str, token: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from kilo_bridge.platform.aws import client

    if not (settings.ecs_cluster and settings.ecs_task_definition):
        raise DispatchError("ECS_CLUSTER and ECS_TASK_DEFINITION must be set")
    subnets = [s.strip() for s in settings.ecs_subnets.split(",") if s.strip()]
    groups = [g.strip() for g in settings.ecs_security_groups.split(",") if g.strip()]
    try:
        response = client("ecs").run_task(
            cluster=settings.ecs_cluster,
            taskDefinition=settings.ecs_task_definition,
            launchType="FARGATE",
            count=1,
            startedBy=job_id[:36],
            clientToken=token,  # ECS dedupes a retried call with the same token
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": subnets, "securityGroups": groups, "assignPublicIp": "DISABLED"}
            },
            overrides={
                "containerOverrides": [
                    {"name": settings.ecs_container_name, "environment": [{"name": "JOB_ID", "value": job_id}]}
                ]
            },
            tags=[{"key": "kilo-bridge:job", "value": job_id}],
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        reason = f"{code}: {error.get('Message', '')}".strip()
        raise DispatchError(reason, retryable=code in _RETRYABLE_CODES, definite=code not in _UNCERTAIN_CODES) from None
    except BotoCoreError as exc:  # no answer (connect or read timeout): the clientToken makes a retry safe
        raise DispatchError(type(exc).__name__, retryable=True, definite=False) from None
    if response.get("failures") or not response.get("tasks"):
        failures = response.get("failures") or []
        reasons = "; ".join(f"{f.get('reason')} {f.get('detail', '')}".strip() for f in failures)
        capacity = any(h in str(f.get("reason", "")).lower() for f in failures for h in _CAPACITY_HINTS)
        raise DispatchError(reasons or "no task started", retryable=capacity)
    return str(response["tasks"][0]["taskArn"])


async def fail_dead_lettered(jobs: JobStore, job_id: str) -> str:
    """A job whose message reached the dead-letter queue (a path the dispatcher never saw: throttled or timed-out
    invocations, Redis down on the last receive): no dispatcher will start it, so a job still queued with no
    task is failed now (`dispatch_failed`), not after JOB_QUEUE_MAX_WAIT_S. → "failed" | "skipped" (its task
    started, or it had ended) | "unknown-job"."""
    error = "dispatch_failed: the job's message reached the dead-letter queue before a task was started"
    outcome = await jobs.fail_undispatched(job_id, "dispatch_failed", error)
    if outcome == "missing":
        return "unknown-job"
    if outcome == "failed":
        log.warning("job failed: its message was dead-lettered", extra={"job_id": job_id})
        await jobs.count_failure_once(job_id)
        return "failed"
    return "skipped"


def job_id_of_task(detail: dict[str, Any]) -> str | None:
    for override in (detail.get("overrides") or {}).get("containerOverrides") or []:
        for var in override.get("environment") or []:
            if var.get("name") == "JOB_ID" and valid_job_id(str(var.get("value"))):
                return str(var["value"])
    started_by = str(detail.get("startedBy") or "")
    return started_by if valid_job_id(started_by) else None


async def finalize(settings: Settings, jobs: JobStore, detail: dict[str, Any]) -> str:
    """A stopped task: if its job is still queued or running, fail it with the task's reason.

    Outcomes: "failed" (we failed it now), "ended-failed" (the runner had failed it), "already-finished",
    "ignored" (not a STOPPED event), "not-a-job", "unknown-job". The first two count as JobsFailed.
    """
    if detail.get("lastStatus") != "STOPPED":
        return "ignored"
    job_id = job_id_of_task(detail)
    if job_id is None:
        return "not-a-job"
    exit_code = None
    for container in detail.get("containers") or []:
        if container.get("name") == settings.ecs_container_name:
            exit_code = container.get("exitCode")
    stopped = str(detail.get("stoppedReason") or "unknown")[:300]
    error = f"the agent task stopped before finishing the job: {stopped} (exit code {exit_code})"
    previous = await jobs.fail_unfinished(job_id, EndReason.TASK_STOPPED, error)
    if previous == "missing":
        log.warning("stopped task names an unknown job", extra={"job_id": job_id})
        return "unknown-job"
    if previous:
        log.warning(
            "job failed: task stopped",
            extra={"job_id": job_id, "exit_code": exit_code, "stopped_reason": stopped, "was": previous},
        )
        await jobs.count_failure_once(job_id)
        return "failed"
    # The runner ended the job itself; a failure it recorded (agent_failed, timeout, budget…) still counts
    # towards the JobsFailed alarm, once.
    job = await jobs.get(job_id)
    if job is not None and job.status in ("failed", "timed_out") and await jobs.count_failure_once(job_id):
        return "ended-failed"
    return "already-finished"
