"""Audit records as the admin API shows them."""

from __future__ import annotations

from pydantic import Field

from kilo_bridge.models import ApiModel


class AuditRecord(ApiModel):
    id: str = Field(description="The record's position in the log (also the `cursor` to page from).")
    at: str = Field(description="When (ISO 8601, UTC, milliseconds).")
    actor: str = Field(description="Who: `admin`, `key:<id>`, `open` (an open server, no key) or `cli` (Redis).")
    action: str = Field(description="What, e.g. `key.create`, `profile.rotate`, `admin.login`.")
    target: str = Field("", description="What it was done to: a key id, profile name, trigger or schedule id.")
    fields: list[str] = Field(default_factory=list, description="The request's field names (never their values).")
    ip: str = Field("", description="From where: the client's address.")
    user_agent: str = ""
    request_id: str = ""
    outcome: str = Field("ok", description="`ok`, or `refused` (a failed admin login).")


class AuditPage(ApiModel):
    records: list[AuditRecord] = Field(description="Newest first.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page; none at the end.")
