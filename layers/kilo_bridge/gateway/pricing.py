"""Per-token USD prices from the gateway's `GET /models`, cached, to turn token usage into cost.

The gateway reports tokens but (unlike some OpenAI-compatible routers) no cost; when an upstream
does report `usage.cost`, that figure wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from kilo_bridge.config import Settings
from kilo_bridge.gateway.apis import CHAT, InferenceApi, token_cap
from kilo_bridge.gateway.client import GatewayClient
from kilo_bridge.gateway.errors import GatewayError
from kilo_bridge.money import nusd_of

log = logging.getLogger(__name__)


def _chars(value: Any) -> int:
    if value is None:
        return 0
    return len(value) if isinstance(value, str) else len(orjson.dumps(value))


def _price(value: Any) -> Decimal | None:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return price if price.is_finite() and price >= 0 else None


class PriceBook:
    def __init__(
        self, gateway: GatewayClient, ttl_s: float = 3600.0, first_wait_s: float = 3.0, settle_wait_s: float = 30.0
    ) -> None:
        self.gateway = gateway
        self.ttl_s = ttl_s
        self.first_wait_s = first_wait_s
        self.settle_wait_s = settle_wait_s  # how long a record may wait for a price list that failed to load
        self._failures = 0  # fetches failed in a row: 0 once the list loads
        self._prices: dict[str, tuple[Decimal, Decimal]] = {}
        self._cache_prices: dict[str, tuple[Decimal, Decimal]] = {}  # (read, write) per model
        # None, not 0.0: the monotonic clock starts near zero at boot, so "long ago" must be explicit.
        self._fetched_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def _refresh(self) -> None:
        try:
            payload = await self.gateway.list_models()
        except GatewayError as exc:
            # Tried again in the background, soon then less often (0.5 s, 1 s, … a minute); meanwhile the last good
            # list (if any) stays in use.
            self._failures += 1
            delay = min(60.0, 0.5 * 2 ** min(self._failures - 1, 7))
            log.warning("model price list unavailable (retry in %.1f s): %s", delay, exc.message)
            self._fetched_at = time.monotonic() - self.ttl_s + delay
            asyncio.get_running_loop().call_later(delay, self._kick)
            return
        self._failures = 0
        prices: dict[str, tuple[Decimal, Decimal]] = {}
        cache: dict[str, tuple[Decimal, Decimal]] = {}
        for model in payload["data"]:
            pricing = model.get("pricing") if isinstance(model, dict) else None
            if not isinstance(pricing, dict) or not isinstance(model.get("id"), str):
                continue
            prompt, completion = _price(pricing.get("prompt")), _price(pricing.get("completion"))
            if prompt is not None and completion is not None:
                prices[model["id"]] = (prompt, completion)
                # Cached prompt tokens have their own prices (`/models`: input_cache_read, input_cache_write);
                # a model without them bills cached tokens as prompt tokens.
                read, write = _price(pricing.get("input_cache_read")), _price(pricing.get("input_cache_write"))
                cache[model["id"]] = (prompt if read is None else read, prompt if write is None else write)
        self._prices = prices
        self._cache_prices = cache
        self._fetched_at = time.monotonic()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._refresh())

    async def prices(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Current prices; refreshed in the background when old, awaited (briefly) only when empty."""
        stale = self._fetched_at is None or time.monotonic() - self._fetched_at > self.ttl_s
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._refresh())
        if not self._prices and self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.first_wait_s)
        return self._prices

    async def estimate_nusd(self, body: dict[str, Any], settings: Settings, api: InferenceApi = CHAT) -> int:
        """A ceiling for what a request may cost, reserved against a key's budget before the call:
        the prompt at ~3 characters a token and the full output cap (or a default) of output."""
        if api is CHAT:
            chars = sum(
                len(m["content"]) if isinstance(m.get("content"), str) else len(str(m.get("content")))
                for m in body.get("messages") or ()
                if isinstance(m, dict)
            )
        else:
            chars = sum(_chars(body.get(name)) for name in api.prompt_fields)
        max_out = 0 if api.token_cap is None else (token_cap(api, body) or settings.budget_default_max_tokens)
        prices = await self.prices()
        price = prices.get(str(body.get("model") or ""))
        if price is None:
            return nusd_of(Decimal(str(settings.budget_fallback_estimate_usd)))
        prompt, completion = price
        return nusd_of(prompt * (chars // 3 + 1) + completion * int(max_out))

    async def cost_nusd(self, models: tuple[str, ...], usage: dict[str, Any] | None) -> int | None:
        """Cost in nano-USD for this usage, or None when it cannot be priced."""
        if not usage:
            return None
        reported = _price(usage.get("cost"))
        if reported is not None:
            return nusd_of(reported)
        prices = await self.prices()
        for model in models:
            if model in prices:
                prompt, completion = prices[model]
                read, write = self._cache_prices.get(model, (prompt, prompt))
                tokens_in = int(usage.get("prompt_tokens") or 0)
                tokens_out = int(usage.get("completion_tokens") or 0)
                # `cached_tokens` / `cache_write_tokens` are part of `prompt_tokens` (apis.chat_usage).
                cached = min(int(usage.get("cached_tokens") or 0), tokens_in)
                written = min(int(usage.get("cache_write_tokens") or 0), tokens_in - cached)
                plain = tokens_in - cached - written
                return nusd_of(prompt * plain + read * cached + write * written + completion * tokens_out)
        return None

    async def cost_when_priced(self, models: tuple[str, ...], usage: dict[str, Any] | None) -> int | None:
        """`cost_nusd`, waiting (up to `settle_wait_s`, in a record written after the answer left) while the price
        list fails to load: the call is charged from its usage once a list comes, not the fallback estimate. A
        model the loaded list does not price stays None at once."""
        deadline = time.monotonic() + self.settle_wait_s
        while True:
            cost = await self.cost_nusd(models, usage)
            left = deadline - time.monotonic()
            if cost is not None or not usage or (self._failures == 0 and self._fetched_at is not None) or left <= 0:
                return cost
            self._kick()
            assert self._task is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), left)
            if self._failures and time.monotonic() < deadline:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
