"""API keys as the admin routes take and show them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kilo_bridge.keys.names import MAX_MODELS, MIN_BUDGET_USD, MODEL_PATTERN, MODEL_PATTERN_MAX, NAME
from kilo_bridge.models import ApiModel

KEY_NAME = NAME
Period = Literal["day", "week", "month"]
MODELS_DESCRIPTION = (
    "Models the key may use: exact ids (`anthropic/claude-sonnet-4.5`) or `provider/*`; none = every model."
)


class KeyLimits(ApiModel):
    budget_usd: float | None = Field(
        None, ge=MIN_BUDGET_USD, le=1_000_000, description="Hard spend budget; none = unlimited."
    )
    budget_period: Period | None = Field(
        None, description="The budget resets at 00:00 UTC each day, week (Monday) or month; none = lifetime."
    )
    models: list[Annotated[str, Field(pattern=MODEL_PATTERN, max_length=MODEL_PATTERN_MAX)]] | None = Field(
        None, max_length=MAX_MODELS, description=MODELS_DESCRIPTION
    )
    rpm: int | None = Field(None, ge=1, le=1_000_000, description="Requests in any 60 s.")
    tpm: int | None = Field(None, ge=1, le=1_000_000_000, description="Tokens per minute (a token bucket).")
    max_jobs: int | None = Field(None, ge=1, le=1_000, description="Concurrent agent jobs.")
    team: str | None = Field(
        None, pattern=KEY_NAME, description="The team it belongs to: the team's budget caps its keys' spend together."
    )


class KeyChange(KeyLimits):
    """Only the fields sent change; `null` clears a limit."""


class KeyCreate(KeyLimits):
    name: str = Field(pattern=KEY_NAME)


class KeyView(ApiModel):
    id: str
    name: str
    created_at: str
    revoked: bool
    budget_usd: float | None
    budget_period: Period | None = None
    spent_usd: float = Field(description="Lifetime spend.")
    reserved_usd: float
    spent_this_period_usd: float | None = Field(None, description="Spend in the current budget period.")
    period_resets_at: str | None = Field(None, description="When the budget period resets (ISO 8601, UTC).")
    models: list[str] | None = Field(None, description=MODELS_DESCRIPTION)
    team: str | None = None
    rpm: int | None
    tpm: int | None
    max_jobs: int | None
    requests: int


class KeyCreated(KeyView):
    key: str = Field(description="The secret: shown once, stored only as a digest.")


class KeyList(ApiModel):
    keys: list[KeyView]


class TeamSet(ApiModel):
    budget_usd: float | None = Field(
        None, ge=MIN_BUDGET_USD, le=10_000_000, description="Caps its keys' spend together."
    )
    budget_period: Period | None = Field(None, description="Resets at 00:00 UTC each day, week or month.")


class TeamView(ApiModel):
    name: str
    budget_usd: float | None
    budget_period: Period | None = None
    spent_usd: float = Field(description="Lifetime spend of its keys (since the team was first used).")
    reserved_usd: float
    spent_this_period_usd: float | None = None
    period_resets_at: str | None = None
    keys: list[str] = Field(default_factory=list, description="Its keys' ids.")


class TeamList(ApiModel):
    teams: list[TeamView]
