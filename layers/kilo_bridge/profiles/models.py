"""Saved profiles as the API takes and shows them: names and variable names, never a value."""

from __future__ import annotations

from pydantic import Field

from kilo_bridge.models import ApiModel

PROFILE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ProfileCreate(ApiModel):
    name: str = Field(pattern=PROFILE_NAME, description="Lower-case letters, digits, '.', '_' or '-'.")
    env: dict[str, str] = Field(
        min_length=1, max_length=32, description="The variables (e.g. GITHUB_TOKEN); sealed at rest, never returned."
    )


class ProfileRotate(ApiModel):
    env: dict[str, str] = Field(min_length=1, max_length=32, description="The new variables: they replace all.")


class ProfileView(ApiModel):
    name: str
    variables: list[str] = Field(description="The variable names (their values are never shown).")
    created_at: str
    updated_at: str


class ProfileList(ApiModel):
    profiles: list[ProfileView]
