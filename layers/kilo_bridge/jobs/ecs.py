"""AWS mode: SQS message → one ECS Fargate task per job (dispatcher), and ECS "Task State Change" →
the job failed when its task stopped without finishing it (finalizer)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from kilo_bridge.config import Settings
from kilo_bridge.jobs.record import valid_job_id
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger

log = get_logger()


class DispatchError(RuntimeError):
    """The task could not be started; the message goes back to the queue (then to the DLQ)."""


def job_id_of_message(body: str) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    job_id = data.get("jobId") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) and valid_job_id(job_id) else None


async def dispatch(settings: Settings, jobs: JobStore, job_id: str) -> str:
    """Start the job's task once: a redelivered message finds the job already dispatched and does nothing."""
    if not await jobs.mark_dispatched(job_id):
        log.info("dispatch skipped: job not queued or already dispatched", extra={"job_id": job_id})
        return "skipped"
    try:
        arn = await asyncio.to_thread(_run_task, settings, job_id)
    except Exception:
        await jobs.undispatch(job_id)  # let the retried message try again
        raise
    await jobs.set_task_arn(job_id, arn)
    log.info("task started", extra={"job_id": job_id, "task_arn": arn})
    return "dispatched"


def _run_task(settings: Settings, job_id: str) -> str:
    from kilo_bridge.platform.aws import client

    if not (settings.ecs_cluster and settings.ecs_task_definition):
        raise DispatchError("ECS_CLUSTER and ECS_TASK_DEFINITION must be set")
    subnets = [s.strip() for s in settings.ecs_subnets.split(",") if s.strip()]
    groups = [g.strip() for g in settings.ecs_security_groups.split(",") if g.strip()]
    response = client("ecs").run_task(
        cluster=settings.ecs_cluster,
        taskDefinition=settings.ecs_task_definition,
        launchType="FARGATE",
        count=1,
        startedBy=job_id[:36],
        clientToken=job_id,  # ECS dedupes a retried call with the same token
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
    if response.get("failures") or not response.get("tasks"):
        reasons = "; ".join(f"{f.get('reason')} {f.get('detail', '')}".strip() for f in response.get("failures", []))
        raise DispatchError(f"RunTask failed: {reasons or 'no task started'}")
    return str(response["tasks"][0]["taskArn"])


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
    previous = await jobs.fail_unfinished(job_id, "task_stopped", error)
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
