"""Saved profiles as the API takes and shows them: names and variable names, never a value."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from kilo_bridge.models import ApiModel
from kilo_bridge.profiles.env import ENV_SCHEMA, ENV_TOTAL_RULE

PROFILE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


SetupCommand = Annotated[str, Field(min_length=1, max_length=4000)]


class ProfileCreate(ApiModel):
    name: str = Field(pattern=PROFILE_NAME, description="Lower-case letters, digits, '.', '_' or '-'.")
    env: dict[str, str] = Field(
        min_length=1,
        max_length=32,
        description="The variables (e.g. GITHUB_TOKEN); sealed at rest, never returned. " + ENV_TOTAL_RULE,
        json_schema_extra=ENV_SCHEMA,
    )
    setup: list[SetupCommand] = Field(
        default_factory=list,
        max_length=20,
        description="Shell commands run in the job's sandbox before its agent, in order, with the job's network "
        "policy (e.g. installing dependencies); one that fails ends the job `setup_failed`. Shown, not sealed: "
        "secrets belong in `env` (the commands see it).",
    )


class ProfileRotate(ApiModel):
    env: dict[str, str] = Field(
        min_length=1,
        max_length=32,
        description="The new variables: they replace all. " + ENV_TOTAL_RULE,
        json_schema_extra=ENV_SCHEMA,
    )
    setup: list[SetupCommand] | None = Field(None, max_length=20, description="New setup commands; absent: kept.")


class ProfileView(ApiModel):
    name: str
    variables: list[str] = Field(description="The variable names (their values are never shown).")
    setup: list[str] = Field(default_factory=list, description="The setup commands run before the agent.")
    created_at: str
    updated_at: str


class ProfileList(ApiModel):
    profiles: list[ProfileView]
