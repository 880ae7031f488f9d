"""What the web layer itself answers: the error shape and health."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kilo_bridge.models import ApiModel
from kilo_bridge.profiles.models import ProfileView
from kilo_bridge.schedules.models import ScheduleView
from kilo_bridge.triggers.models import TriggerView


class ErrorDetail(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    code: str
    message: str
    request_id: str
    details: Any = None


class ErrorResponse(ApiModel):
    """Every error, on every route (SSE `event: error` carries the same object)."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # Kilo's extras: title, balance, buyCreditsUrl

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """Every error on `/v1`: OpenAI's shape (the gateway's own fields when it answered the error)."""

    model_config = ConfigDict(extra="allow")  # Kilo's top-level `error_type`

    error: OpenAIErrorDetail


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    redis: Literal["ok", "unreachable"]
    gateway_configured: bool
    gateway_base: str
    admin_api: bool = Field(False, description="Whether the admin routes are on (ADMIN_API_KEY is set).")


class KeyHoldings(ApiModel):
    """What a key set up to run later or to carry secrets: for an admin (revoked keys included)."""

    triggers: list[TriggerView]
    schedules: list[ScheduleView]
    profiles: list[ProfileView]
