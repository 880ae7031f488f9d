"""The local side of schedules: a bullmq worker on the schedules queue that turns each firing into a run."""

from __future__ import annotations

from typing import Any

from kilo_bridge.config import Settings
from kilo_bridge.jobs.queue import bull_prefix
from kilo_bridge.jobs.service import JobService
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.redis import Store
from kilo_bridge.schedules.backends import QUEUE_NAME
from kilo_bridge.schedules.service import ScheduleService

log = get_logger()


class ScheduleWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = Store(settings)
        self._jobs = JobService(self._store)
        self.service = ScheduleService(self._store, self._jobs)
        self._worker: Any = None

    async def start(self) -> None:
        from bullmq import Worker

        opts = {"connection": self.settings.resolved_redis_url, "prefix": bull_prefix(self.settings), "drainDelay": 2}
        self._worker = Worker(QUEUE_NAME, self._process, opts)

    async def _process(self, job: Any, _token: str) -> str:
        schedule_id = str((job.data or {}).get("scheduleId", ""))
        # bullmq names each firing's job after its scheduler and time: the firing's identity.
        submitted = await self.service.fire(schedule_id, str(job.id))
        return submitted.job_id if submitted else "skipped"

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.close()
            self._worker = None
        await self.service.close()
        await self._jobs.close()
        await self._store.close()
