"""Last-seen credits: the last balance read from a pluggable source, minus the spend counted since.

The gateway's documented API has no balance call. Kilo's own editor extension reads
`GET https://api.kilo.ai/api/profile/balance` with the same key (`{"balance": <USD>}`); that is the
default source, treated as best effort. A 402 from the gateway sets the balance to zero (usage/ledger.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Protocol

from kilo_bridge.errors import BridgeError, NotConfigured
from kilo_bridge.gateway.client import GatewayClient
from kilo_bridge.gateway.errors import GatewayError
from kilo_bridge.money import usd
from kilo_bridge.usage.ledger import Ledger
from kilo_bridge.usage.models import Credits

log = logging.getLogger(__name__)


class BalanceSource(Protocol):
    name: str

    async def read(self) -> float:
        """The current balance in USD; raises BridgeError when it cannot be read."""
        ...


class KiloProfileBalance:
    name = "kilo-profile"

    def __init__(self, gateway: GatewayClient, url: str) -> None:
        self.gateway = gateway
        self.url = url

    async def read(self) -> float:
        if not self.gateway.configured:
            raise NotConfigured("KILO_API_KEY is not configured.")
        payload = await self.gateway.get_json(self.url)
        balance = payload.get("balance") if isinstance(payload, dict) else None
        if isinstance(balance, bool) or not isinstance(balance, int | float):
            raise GatewayError("The balance answer has no numeric 'balance'.", code="upstream_malformed")
        return float(balance)


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class CreditService:
    def __init__(self, ledger: Ledger, source: BalanceSource, max_age_s: int) -> None:
        self.store = ledger
        self.source = source
        self.max_age_s = max_age_s

    async def refresh(self) -> Credits:
        """Read the balance now; a failure is remembered (lastError) and the old figure kept."""
        try:
            balance = await self.source.read()
        except BridgeError as exc:
            log.warning("credit balance refresh failed: %s", exc.message)
            await self.store.set_credit_error(f"{exc.code}: {exc.message}")
        else:
            await self.store.set_balance(balance, self.source.name)
        return await self.view(refresh_if_stale=False)

    async def view(self, refresh_if_stale: bool = True) -> Credits:
        raw = await self.store.credits_raw()
        seen_at = _parse_time(raw.get("seen_at"))
        age = (dt.datetime.now(dt.UTC) - seen_at).total_seconds() if seen_at else None
        stale = age is None or age > self.max_age_s
        if stale and refresh_if_stale:
            return await self.refresh()
        balance = usd(int(raw["balance_nusd"])) if raw.get("balance_nusd") else None
        spent = usd(int(raw.get("spent_since_nusd") or 0))
        return Credits(
            balance_usd=balance,
            seen_at=raw.get("seen_at") or None,
            spent_since_usd=spent,
            remaining_usd=None if balance is None else max(0.0, balance - spent),
            source=raw.get("source") or None,
            stale=stale,
            last_error=raw.get("last_error") or None,
        )
