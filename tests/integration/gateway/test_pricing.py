"""The price list from the fake gateway's `GET /models`: read on first use, whatever the clock says."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from kilo_bridge.config import Settings
from kilo_bridge.gateway.client import GatewayClient
from kilo_bridge.gateway.pricing import PriceBook


@pytest.mark.parametrize("uptime_s", [5.0, 10_000_000.0], ids=["just-booted", "long-up"])
async def test_first_use_reads_the_price_list(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, uptime_s: float
) -> None:
    # The monotonic clock counts from boot: on a machine up for less than the cache's TTL, "never read"
    # must still mean "read now" (a fresh CI machine priced every agent run at $0 before).
    start = time.perf_counter()
    monkeypatch.setattr(time, "monotonic", lambda: uptime_s + (time.perf_counter() - start))
    gateway = GatewayClient(make_settings())
    try:
        prices = await PriceBook(gateway).prices()
    finally:
        await gateway.close()
    assert prices["kilo-auto/balanced"] == (Decimal("0.000003"), Decimal("0.000015"))
