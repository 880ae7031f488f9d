"""The service objects one process shares, built from settings without any I/O (cold start stays cheap)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kilo_bridge.config import Settings
from kilo_bridge.gateway.client import GatewayClient
from kilo_bridge.gateway.credits import CreditService, KiloProfileBalance
from kilo_bridge.gateway.pricing import PriceBook
from kilo_bridge.generation.service import Generation
from kilo_bridge.jobs.service import JobService
from kilo_bridge.keys.models import KeyView
from kilo_bridge.platform.redis import Store
from kilo_bridge.profiles.service import ProfileService
from kilo_bridge.schedules.service import ScheduleService
from kilo_bridge.triggers.service import TriggerService
from kilo_bridge.usage.ledger import Ledger


@dataclass(slots=True)
class Services:
    settings: Settings
    gateway: GatewayClient
    store: Store
    ledger: Ledger
    prices: PriceBook
    credits: CreditService
    generation: Generation
    jobs: JobService
    profiles: ProfileService
    triggers: TriggerService
    schedules: ScheduleService

    @classmethod
    def build(cls, settings: Settings) -> Services:
        gateway = GatewayClient(settings)
        store = Store(settings)
        # A reservation is held at most as long as a call can run (a stream's cap and the time to open it), plus
        # a minute: past that its settlement is not coming.
        hold_s = settings.reservation_hold_s or settings.kilo_stream_max_s + settings.kilo_timeout_ms / 1000 + 60
        ledger = Ledger(
            store,
            hold_s=hold_s,
            spool_dir=settings.resolved_spool_dir,
            owner_timeout_s=settings.reservation_owner_timeout_s,
        )
        prices = PriceBook(gateway)
        balance = KiloProfileBalance(gateway, settings.balance_url)
        credits = CreditService(ledger, balance, settings.kilo_credits_max_age_s)
        generation = Generation(settings, gateway, ledger, prices)
        profiles = ProfileService(store)
        jobs = JobService(store, profiles)
        triggers, schedules = TriggerService(store, jobs), ScheduleService(store, jobs)
        return cls(settings, gateway, store, ledger, prices, credits, generation, jobs, profiles, triggers, schedules)

    async def revoke_key(self, key_id: str) -> KeyView:
        """A key revoked at once, with the work it left to start later: its schedules stop firing (their
        backends disabled); its triggers, and anything else that would start a job as it, are refused by the
        job store's create script from now on."""
        view = await self.jobs.keys.revoke(key_id)
        await self.schedules.disable_owner(await self.jobs.keys.digest_for(key_id))
        return view

    async def close(self) -> None:
        await self.schedules.close()
        await self.jobs.close()
        await self.ledger.close()
        await self.gateway.close()
        await self.store.close()


@asynccontextmanager
async def local_workers(settings: Settings, concurrency: int | None = None) -> AsyncIterator[None]:
    """The in-process workers of `JOB_QUEUE=local` (the app's lifespan, `kilo-bridge worker`): the job worker with
    its reaper, and the schedule worker that fires the schedules made through the API into runs. Started here, at
    the composition root, because schedules build on jobs and never the reverse; imported only when used."""
    from kilo_bridge.jobs.worker import LocalWorker
    from kilo_bridge.schedules.local import ScheduleWorker

    jobs = LocalWorker(settings, concurrency)
    await jobs.start()
    schedules = ScheduleWorker(settings)
    try:
        await schedules.start()
        yield
    finally:
        await schedules.close()
        await jobs.close()
