"""Scheduled agent runs: create (validated as a run would be, at most every 10 minutes), list, show, pause,
resume, delete; `fire` starts one run of a schedule as its owner (budget and maxJobs apply), once per firing."""

from __future__ import annotations

import secrets

from kilo_bridge.errors import BridgeError, NotFound, invalid
from kilo_bridge.jobs.catalogue import get_agent
from kilo_bridge.jobs.models import RunAgentRequest
from kilo_bridge.jobs.policy import check_branch, check_repo_url, check_timeout
from kilo_bridge.jobs.service import JobService, Submitted
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.clock import now_ms
from kilo_bridge.platform.redis import Store
from kilo_bridge.profiles.service import ProfileNotFound
from kilo_bridge.schedules import cron
from kilo_bridge.schedules.backends import Scheduler, scheduler
from kilo_bridge.schedules.models import ScheduleCreate
from kilo_bridge.schedules.store import OPEN_OWNER, ScheduleStore, StoredSchedule

log = get_logger()
MAX_SCHEDULES = 20


class ScheduleNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such schedule.")


class TooManySchedules(BridgeError, code="conflict"):
    """The owner keeps as many schedules as allowed."""


def owner_of(caller: str | None) -> str:
    return caller or OPEN_OWNER


class ScheduleService:
    def __init__(self, store: Store, jobs: JobService) -> None:
        self.store, self.jobs, self.settings = store, jobs, store.settings
        self.schedules = ScheduleStore(store)
        self._backend: Scheduler | None = None

    @property
    def backend(self) -> Scheduler:
        if self._backend is None:
            self._backend = scheduler(self.settings)
        return self._backend

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()

    async def create(self, caller: str | None, body: ScheduleCreate) -> StoredSchedule:
        cron.check(body.cron, body.timezone)
        run = body.run
        get_agent(self.settings.agents_path, run.agent)
        repo = check_repo_url(run.repo_url, self.settings)
        check_branch(run.base_branch)
        check_timeout(run.timeout_ms, self.settings)
        if run.profile is not None:
            try:
                await self.jobs.profiles.get(caller, run.profile)
            except ProfileNotFound:
                raise invalid("run.profile", "no such profile") from None
        stored = StoredSchedule(
            id="sch_" + secrets.token_hex(12),
            owner=owner_of(caller),
            name=body.name,
            cron=" ".join(body.cron.split()),
            tz=body.timezone,
            state="enabled",
            run=run.model_copy(update={"repo_url": repo.url}).model_dump(by_alias=True, exclude_none=True),
            created_ms=now_ms(),
        )
        async with self.store.guard():
            if not await self.schedules.create(stored, MAX_SCHEDULES):
                raise TooManySchedules(f"This key keeps {MAX_SCHEDULES} schedules already; delete one first.")
        try:
            await self.backend.put(stored, enabled=True)
        except Exception:
            async with self.store.guard():
                await self.schedules.delete(stored.owner, stored.id)
            raise
        log.info("schedule create", extra={"schedule": stored.id, "cron": stored.cron, "tz": stored.tz})
        return stored

    async def get(self, caller: str | None, schedule_id: str) -> StoredSchedule:
        async with self.store.guard():
            found = await self.schedules.get(schedule_id)
        if found is None or found.owner != owner_of(caller):
            raise ScheduleNotFound()  # another key's schedule is as good as absent
        return found

    async def all(self, caller: str | None) -> list[StoredSchedule]:
        async with self.store.guard():
            return await self.schedules.all(owner_of(caller))

    async def set_state(self, caller: str | None, schedule_id: str, state: str) -> StoredSchedule:
        found = await self.get(caller, schedule_id)
        await self.backend.put(found, enabled=state == "enabled")
        async with self.store.guard():
            await self.schedules.set_state(schedule_id, state)
        log.info(f"schedule {'resume' if state == 'enabled' else 'pause'}", extra={"schedule": schedule_id})
        return await self.get(caller, schedule_id)

    async def delete(self, caller: str | None, schedule_id: str) -> None:
        found = await self.get(caller, schedule_id)
        await self.backend.remove(found.id)
        async with self.store.guard():
            await self.schedules.delete(found.owner, found.id)
        log.info("schedule delete", extra={"schedule": schedule_id})

    async def disable_owner(self, owner: str) -> int:
        """Every schedule of a revoked key paused, its backend schedule (bullmq job scheduler, EventBridge
        schedule) disabled at once; the schedules stay, for an admin to see and delete. → how many."""
        async with self.store.guard():
            found = await self.schedules.all(owner)
        for s in found:
            await self.backend.put(s, enabled=False)
            async with self.store.guard():
                await self.schedules.set_state(s.id, "paused")
        if found:
            log.info("schedules disabled: their key is revoked", extra={"schedules": len(found)})
        return len(found)

    async def fire(self, schedule_id: str, firing: str) -> Submitted | None:
        """One firing (`firing` names it: a retried delivery of the same one starts no second run). A schedule
        deleted or paused since is skipped."""
        async with self.store.guard():
            found = await self.schedules.get(schedule_id)
        if found is None or found.state != "enabled":
            log.info("schedule fire skipped", extra={"schedule": schedule_id})
            return None
        owner = None if found.owner == OPEN_OWNER else found.owner
        if owner is not None and not await self.jobs.keys.is_active(owner):
            # Revoked since (its backend schedule is being disabled too): a firing still in flight does nothing.
            log.info("schedule fire skipped: its key is revoked", extra={"schedule": schedule_id})
            return None
        run = RunAgentRequest.model_validate(found.run)
        submitted = await self.jobs.submit(run, owner, f"schedule-{schedule_id}-{firing}", "scheduled")
        log.info("schedule fired", extra={"schedule": schedule_id, "job_id": submitted.job_id})
        return submitted
