"""Schedules as the API takes and shows them. A schedule's run carries no secrets (no `profileEnv`): it
names a saved profile instead, so nothing secret sits in a schedule's target on AWS."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kilo_bridge.jobs.models import AGENT_NAME, base_branch_field
from kilo_bridge.models import MODEL_ID, ApiModel
from kilo_bridge.profiles.models import PROFILE_NAME
from kilo_bridge.schedules import cron as cron_rules

SCHEDULE_ID = r"^sch_[a-f0-9]{24}$"


class ScheduledRun(ApiModel):
    repo_url: str = Field(min_length=1, max_length=2048)
    agent: str = Field(pattern=AGENT_NAME)
    prompt: str | None = Field(None, min_length=1, max_length=20_000)
    profile: str | None = Field(None, pattern=PROFILE_NAME, description="A saved profile of this key.")
    timeout_ms: int | None = Field(None, ge=1_000, le=3_600_000)
    dry_run: bool = False
    base_branch: str | None = base_branch_field()
    model: str | None = Field(None, pattern=MODEL_ID)
    max_cost_usd: float | None = Field(None, gt=0, le=10_000)


class ScheduleCreate(ApiModel):
    name: str = Field(min_length=1, max_length=100)
    cron: str = Field(
        min_length=9, max_length=100, description=cron_rules.RULES, json_schema_extra={"pattern": cron_rules.PATTERN}
    )
    timezone: str = Field(
        "UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone of the cron.",
        json_schema_extra=cron_rules.timezone_schema,
    )
    run: ScheduledRun


class ScheduleView(ApiModel):
    id: str
    name: str
    cron: str
    timezone: str
    state: Literal["enabled", "paused"]
    run: ScheduledRun
    next_run_at: str | None = Field(None, description="When it fires next (none while paused).")
    created_at: str


class ScheduleList(ApiModel):
    schedules: list[ScheduleView]
