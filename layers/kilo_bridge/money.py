"""Money is integer nano-USD (1e-9 USD) wherever it is stored or added: Redis's HINCRBY is exact where
HINCRBYFLOAT would drift. Prices (per-token USD strings) are computed in Decimal and truncated to it."""

from __future__ import annotations

from decimal import Decimal

NANO = 1_000_000_000
_NANO_D = Decimal(NANO)


def nusd(usd: float) -> int:
    """A USD amount from a setting or a request, rounded to nano-USD."""
    return round(usd * NANO)


def nusd_of(usd: Decimal) -> int:
    """A computed cost, truncated to nano-USD (never rounded up past what was spent)."""
    return int(usd * _NANO_D)


def usd(amount_nusd: int) -> float:
    return amount_nusd / NANO
