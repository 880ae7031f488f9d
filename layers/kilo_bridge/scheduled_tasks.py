"""Scheduled work (EventBridge Scheduler → functions/scheduled; locally the worker's reaper loop):
refresh the credit balance, reap stale jobs, start scheduled agent runs."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson

from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.models import RunAgentRequest
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.services import Services

TASKS = ("refresh-credits", "reap-jobs", "run-agent")


class UnknownTask(BridgeError, code="bad_request"):
    """A schedule named a task this service does not have."""


def firing(event: dict[str, Any]) -> str:
    """Which firing a delivery is, to the minute (UTC): the time it was scheduled for, when EventBridge Scheduler
    filled in `scheduledTime` (the same on every retry and redelivery of one firing, so they start one run);
    else the current minute (an event made by hand, or by a schedule made before the field existed)."""
    raw = event.get("scheduledTime")
    if isinstance(raw, str) and len(raw) <= 40:
        try:
            at = dt.datetime.fromisoformat(raw)
        except ValueError:
            at = None  # not filled in (the placeholder itself) or not a time
        if at is not None and at.tzinfo is not None:
            return at.astimezone(dt.UTC).strftime("%Y%m%d%H%M")
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")


async def run_task(services: Services, event: dict[str, Any]) -> dict[str, Any]:
    task = event.get("task")
    if task == "refresh-credits":
        credits = await services.credits.refresh()
        return {
            "task": task,
            "balanceUsd": credits.balance_usd,
            "stale": credits.stale,
            "lastError": credits.last_error,
        }
    if task == "reap-jobs":
        moved = await JobStore(services.store).reap()
        return {"task": task, "ended": moved}
    if task == "run-agent" and isinstance(event.get("schedule"), str):
        # A schedule made through the API: its stored run, as its owner, once per firing.
        fired = await services.schedules.fire(event["schedule"], firing(event))
        return {"task": task, "jobId": fired.job_id if fired else None, "status": fired.status if fired else "skipped"}
    if task == "run-agent":
        body = RunAgentRequest.model_validate(event.get("body") or {})
        # Scheduler delivers at least once: one run per schedule body and firing.
        minute = firing(event)
        key = (
            "schedule:"
            + hashlib.sha256(orjson.dumps(event.get("body"), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
            + ":"
            + minute
        )
        accepted = await services.jobs.submit(body, None, key, "scheduled")
        return {"task": task, "jobId": accepted.job_id, "status": accepted.status}
    raise UnknownTask(f"unknown task {task!r}; one of {', '.join(TASKS)}")
