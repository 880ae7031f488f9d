"""Where schedules fire: bullmq job schedulers in the local Redis, or EventBridge Scheduler on AWS.

Either way a firing names the schedule (`{"scheduleId"}` locally; `{"task": "run-agent", "body", "schedule",
"scheduledTime"}` for functions/scheduled) and ScheduleService.fire starts the run from the stored schedule, once
per firing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import orjson

from kilo_bridge.config import Settings
from kilo_bridge.jobs.queue import bull_prefix
from kilo_bridge.schedules.cron import eventbridge
from kilo_bridge.schedules.store import StoredSchedule

QUEUE_NAME = "agent-schedules"
# EventBridge Scheduler retries a failed invocation 185 times over 24 hours unless told otherwise. A firing is
# retried twice within 15 minutes (a throttled or briefly failing function still gets the night's run), and
# every attempt carries the firing's own scheduled time (the context attribute below, the same on each retry),
# which functions/scheduled makes the run's idempotency key: however often a firing is delivered, one run.
RETRY_POLICY = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


class Scheduler(Protocol):
    async def put(self, s: StoredSchedule, enabled: bool) -> None: ...
    async def remove(self, schedule_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalScheduler:
    """bullmq job schedulers: one per enabled schedule (pausing removes it, resuming puts it back)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: Any = None

    def queue(self) -> Any:
        if self._queue is None:
            from bullmq import Queue

            self._queue = Queue(
                QUEUE_NAME, {"connection": self.settings.resolved_redis_url, "prefix": bull_prefix(self.settings)}
            )
        return self._queue

    async def put(self, s: StoredSchedule, enabled: bool) -> None:
        if not enabled:
            await self.remove(s.id)
            return
        every = self.settings.schedule_test_every_ms
        repeat: dict[str, Any] = {"every": every} if every else {"pattern": s.cron, "tz": s.tz}
        opts = {"removeOnComplete": 100, "removeOnFail": 100}
        await self.queue().upsertJobScheduler(s.id, repeat, "fire", {"scheduleId": s.id}, opts)

    async def remove(self, schedule_id: str) -> None:
        await self.queue().removeJobScheduler(schedule_id)

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()
            self._queue = None


class AwsScheduler:
    """EventBridge Scheduler schedules in the API's own group, each targeting functions/scheduled."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.schedule_group and settings.schedule_target_arn and settings.schedule_role_arn):
            raise RuntimeError("SCHEDULE_GROUP needs SCHEDULE_TARGET_ARN and SCHEDULE_ROLE_ARN")
        self.group, self.target, self.role = (
            settings.schedule_group,
            settings.schedule_target_arn,
            settings.schedule_role_arn,
        )

    def _client(self) -> Any:
        from kilo_bridge.platform.aws import client

        return client("scheduler")

    def _spec(self, s: StoredSchedule, enabled: bool) -> dict[str, Any]:
        event = {"task": "run-agent", "body": s.run, "schedule": s.id, "scheduledTime": SCHEDULED_TIME}
        return {
            "Name": s.id,
            "GroupName": self.group,
            "ScheduleExpression": eventbridge(s.cron),
            "ScheduleExpressionTimezone": s.tz,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if enabled else "DISABLED",
            "Description": s.name[:512],
            "Target": {
                "Arn": self.target,
                "RoleArn": self.role,
                "Input": orjson.dumps(event).decode(),
                "RetryPolicy": RETRY_POLICY,
            },
        }

    async def put(self, s: StoredSchedule, enabled: bool) -> None:
        scheduler = self._client()

        def upsert() -> None:
            try:
                scheduler.get_schedule(Name=s.id, GroupName=self.group)
            except scheduler.exceptions.ResourceNotFoundException:
                scheduler.create_schedule(**self._spec(s, enabled))
                return
            scheduler.update_schedule(**self._spec(s, enabled))

        await asyncio.to_thread(upsert)

    async def remove(self, schedule_id: str) -> None:
        scheduler = self._client()

        def delete() -> None:
            with contextlib.suppress(scheduler.exceptions.ResourceNotFoundException):  # gone already
                scheduler.delete_schedule(Name=schedule_id, GroupName=self.group)

        await asyncio.to_thread(delete)

    async def close(self) -> None:
        return None


def scheduler(settings: Settings) -> Scheduler:
    return AwsScheduler(settings) if settings.schedule_group else LocalScheduler(settings)
