"""The job's own API key and what it is metered: every model call the agent makes is admitted and charged on
it, so its spend is the job's cost (never the CLI's own figures, which the agent could forge). While the agent
runs its usage is read into the live log, and the agent is stopped once a call was refused for its cost cap."""

from __future__ import annotations

import asyncio

from agent_task.context import JobContext
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.money import nusd
from kilo_bridge.observability import get_logger

logger = get_logger()


class Meter:
    def __init__(self, ctx: JobContext, keys: KeyStore) -> None:
        self.ctx = ctx
        self.keys = keys
        self.job_key: str | None = None
        self._failed_seen = 0

    async def open_key(self) -> str:
        """The job's key: its budget is the job's maxCostUsd, it lives as long as the job can; it may use the models
        its owner may, and spends from its owner's team."""
        ctx, st = self.ctx, self.ctx.settings
        record = ctx.record
        budget = nusd(record.max_cost_usd) if record.max_cost_usd is not None else 0
        ttl = int(max(1.0, ctx.deadline - asyncio.get_running_loop().time())) + 60
        key = await ctx.until_redis_answers(
            "job key", lambda: self.keys.create_job_key(ctx.job_id, budget, st.job_key_rpm, ttl, record.owner)
        )
        self.job_key = key
        ctx.add_secret(key)
        return key

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.ctx.settings.job_heartbeat_s * 2))
            await self.read()

    async def read(self) -> None:
        """What the key was metered so far, the gateway errors it met said once each in the live log."""
        ctx = self.ctx
        assert self.job_key is not None
        try:
            usage = await self.keys.job_key_usage(self.job_key)
        except Exception as exc:  # a Redis blip: the heartbeat loop judges real outages
            logger.info("metering read failed", extra={"job_id": ctx.job_id, "error": type(exc).__name__})
            return
        ctx.metered = usage
        if usage.failed > self._failed_seen and usage.last_error not in (None, "client_disconnected"):
            self._failed_seen = usage.failed
            await ctx.log.line(
                "bridge",
                f"a model call failed: {usage.last_error} ({usage.failed} of {usage.requests} calls so far)",
                level="warn",
            )
        if usage.budget_refusals and ctx.stop_why == "":
            await ctx.log.line("bridge", "the cost cap is reached: the agent's next model call was refused")
            ctx.request_stop("budget")

    async def settle(self) -> None:
        """Revoke the job's key once its last calls settled; its spend is the job's cost."""
        if self.job_key is None:
            return
        secret, ctx = self.job_key, self.ctx
        try:
            for _ in range(30):  # calls admitted before the agent exited settle within moments
                usage = await self.keys.job_key_usage(secret)
                if usage.reserved_nusd <= 0:
                    break
                await asyncio.sleep(0.1)
        except Exception as exc:  # the revoke below still settles what it can
            logger.info("metering read failed", extra={"job_id": ctx.job_id, "error": type(exc).__name__})
        try:  # its spend is the job's cost: worth waiting for Redis
            ctx.metered = await ctx.until_redis_answers("revoke job key", lambda: self.keys.revoke_job_key(secret))
        except Exception as exc:  # the key expires with the job; its reservation is charged then
            logger.warning("job key not revoked", extra={"job_id": ctx.job_id, "error": type(exc).__name__})
