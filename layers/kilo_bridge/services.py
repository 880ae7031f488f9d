"""The service objects one process shares, built from settings without any I/O (cold start stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass

from kilo_bridge.config import Settings
from kilo_bridge.credits import CreditService, KiloProfileBalance
from kilo_bridge.gateway import GatewayClient
from kilo_bridge.generation import Generation
from kilo_bridge.job_service import JobService
from kilo_bridge.pricing import PriceBook
from kilo_bridge.store import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    gateway: GatewayClient
    store: Store
    prices: PriceBook
    credits: CreditService
    generation: Generation
    jobs: JobService

    @classmethod
    def build(cls, settings: Settings) -> Services:
        gateway = GatewayClient(settings)
        store = Store(settings)
        prices = PriceBook(gateway)
        balance = KiloProfileBalance(gateway, settings.balance_url)
        credits = CreditService(store, balance, settings.kilo_credits_max_age_s)
        generation = Generation(settings, gateway, store, prices)
        return cls(settings, gateway, store, prices, credits, generation, JobService(store))

    async def close(self) -> None:
        await self.jobs.close()
        await self.gateway.close()
        await self.store.close()
