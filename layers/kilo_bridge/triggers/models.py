"""Triggers as the API takes and shows them. The signing secret is in TriggerCreated only: never again."""

from __future__ import annotations

from pydantic import Field

from kilo_bridge.jobs.models import AGENT_NAME, base_branch_field
from kilo_bridge.models import ApiModel
from kilo_bridge.profiles.models import PROFILE_NAME
from kilo_bridge.triggers.template import MAX_TEMPLATE

TRIGGER_ID = r"^trg_[A-Za-z0-9_-]{32}$"


class TriggerCreate(ApiModel):
    name: str = Field(min_length=1, max_length=100, description="For people: what calls it.")
    agent: str = Field(pattern=AGENT_NAME, description="A name from GET /api/kilo/agents.")
    repo_url: str = Field(min_length=1, max_length=2048, description="The repository every run works on.")
    prompt_template: str = Field(
        "",
        max_length=MAX_TEMPLATE,
        description="The run's prompt: text with `{{ body.path.to.field }}` taken from the call's JSON body "
        "(`{{ body }}`: all of it). A missing field renders empty; nothing else is evaluated: a `{{ … }}` other "
        "than only `{{ body.path.to.field }}` (segments of letters, digits, `_` or `-`) is refused.",
    )
    profile: str | None = Field(None, pattern=PROFILE_NAME, description="A saved profile of this key.")
    max_cost_usd: float | None = Field(None, gt=0, le=10_000, description="Each run's cost cap.")
    base_branch: str | None = base_branch_field()
    dry_run: bool = Field(False, description="Each run keeps its diff only: no push, no pull request.")


class TriggerView(ApiModel):
    id: str
    name: str
    url: str = Field(description="Where the sender POSTs its signed calls.")
    agent: str
    repo_url: str
    prompt_template: str
    profile: str | None = None
    max_cost_usd: float | None = None
    base_branch: str | None = None
    dry_run: bool = False
    created_at: str


class TriggerCreated(TriggerView):
    secret: str = Field(
        description="The signing secret, shown this once: `X-Kilo-Signature: sha256=<hex HMAC-SHA256 of "
        "'<X-Kilo-Timestamp>.<body>' with it>`."
    )


class TriggerList(ApiModel):
    triggers: list[TriggerView]


class Delivery(ApiModel):
    at: str
    outcome: str = Field(description="started, or refused (see code)")
    code: str | None = None
    job_id: str | None = None
    job_url: str | None = None
    job_status: str | None = None
    request_id: str


class DeliveryList(ApiModel):
    deliveries: list[Delivery] = Field(description="Verified calls, newest first (the last 20).")


class TriggerAccepted(ApiModel):
    job_id: str
    status: str
    status_url: str
