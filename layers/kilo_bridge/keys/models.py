"""API keys as the admin routes take and show them."""

from __future__ import annotations

from pydantic import Field

from kilo_bridge.models import ApiModel

KEY_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class KeyCreate(ApiModel):
    name: str = Field(pattern=KEY_NAME)
    budget_usd: float | None = Field(None, gt=0, le=1_000_000, description="Hard spend budget; none = unlimited.")
    rpm: int | None = Field(None, ge=1, le=1_000_000, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, le=1_000_000_000, description="Tokens per minute.")
    max_jobs: int | None = Field(None, ge=1, le=1_000, description="Concurrent agent jobs.")


class KeyView(ApiModel):
    id: str
    name: str
    created_at: str
    revoked: bool
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float
    rpm: int | None
    tpm: int | None
    max_jobs: int | None
    requests: int


class KeyCreated(KeyView):
    key: str = Field(description="The secret: shown once, stored only as a digest.")


class KeyList(ApiModel):
    keys: list[KeyView]
