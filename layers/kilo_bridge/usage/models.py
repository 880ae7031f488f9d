"""Credits, usage counters, stats and the badge as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kilo_bridge.keys.models import KeyView
from kilo_bridge.models import ApiModel


class Credits(ApiModel):
    balance_usd: float | None = Field(None, description="Balance last read from the credit source.")
    seen_at: str | None = Field(None, description="When that balance was read (ISO 8601, UTC).")
    spent_since_usd: float = Field(0.0, description="Spend counted here since that read.")
    remaining_usd: float | None = Field(None, description="balanceUsd - spentSinceUsd, floored at 0.")
    source: str | None = None
    stale: bool = Field(True, description="True when no fresh balance could be read.")
    last_error: str | None = None


class Counters(ApiModel):
    requests: int = 0
    ok: int = 0
    failed: int = 0
    streams: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: float = 0.0
    unpriced: int = Field(0, description="Calls whose cost could not be priced (unknown model price).")


class AgentRunCounts(ApiModel):
    queued: int = Field(0, description="Waiting for a worker now.")
    running: int = Field(0, description="Running now.")
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0


class Stats(ApiModel):
    totals: Counters
    by_model: dict[str, Counters]
    by_key: dict[str, Counters] = Field(
        default_factory=dict, description="Per API key (`name:id`): all keys on an open server, else the caller's own."
    )
    by_team: dict[str, Counters] = Field(
        default_factory=dict,
        description="Per team (the sums of its keys): all teams on an open server, else the caller's.",
    )
    by_day: dict[str, Counters] = Field(description="The last 7 days, UTC.")
    agent_runs: AgentRunCounts
    credits: Credits


class Badge(BaseModel):
    """shields.io endpoint badge (https://shields.io/badges/endpoint-badge)."""

    schemaVersion: Literal[1] = 1
    label: str
    message: str
    color: str
    namedLogo: str | None = None
    cacheSeconds: int = 300
    isError: bool | None = None  # shields.io shows the badge in its error style


class ModelUsage(ApiModel):
    requests: int = 0
    tokens: int = 0
    spend_usd: float = 0.0


class OpenJob(ApiModel):
    id: str
    status: str
    agent: str
    created_at: str


class Me(ApiModel):
    """The calling key's own figures: its limits and budget, spend this period and lifetime, usage by day and
    model, what it holds in flight."""

    key: KeyView
    usage: dict[str, dict[str, ModelUsage]] = Field(description="The last 7 UTC days, newest first: model → figures.")
    open_calls: int = Field(description="Calls admitted and not yet settled (each holds a reservation).")
    unfinished_jobs: list[OpenJob] = Field(description="Its agent jobs queued or running.")
