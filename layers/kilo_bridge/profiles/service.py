"""Saved profiles: named sets of job variables (tokens, settings) an API key keeps for its runs.

Values are sealed with the job secrets' box (platform/sealing.py) under the `profile` scope, bound to their owner
and name, and opened only to copy them into a job (JobService.submit, where the run's own values win). What
the API shows of a profile is its name and its variable names.
"""

from __future__ import annotations

import asyncio

from kilo_bridge.config import Settings
from kilo_bridge.errors import BridgeError, Conflict, NotFound
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.clock import iso, now_ms
from kilo_bridge.platform.redis import Store
from kilo_bridge.platform.sealing import SecretBox, secret_box
from kilo_bridge.profiles.env import check_profile_env
from kilo_bridge.profiles.models import ProfileView
from kilo_bridge.profiles.store import OPEN_OWNER, ProfileStore, StoredProfile

log = get_logger()
SCOPE = "profile"
MAX_PROFILES = 50


class ProfileNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such profile.")


class TooManyProfiles(BridgeError, code="conflict"):
    """The owner keeps as many profiles as allowed."""


def owner_of(caller: str | None) -> str:
    return caller or OPEN_OWNER


def _view(p: StoredProfile) -> ProfileView:
    return ProfileView(
        name=p.name, variables=p.variables, created_at=iso(p.created_ms) or "", updated_at=iso(p.updated_ms) or ""
    )


class ProfileService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings: Settings = store.settings
        self.profiles = ProfileStore(store)
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = secret_box(self.settings)
        return self._box

    async def _save(self, mode: str, caller: str | None, name: str, env: dict[str, str]) -> ProfileView:
        check_profile_env(env)
        owner = owner_of(caller)
        sealed = await asyncio.to_thread(self.box.seal, f"{owner}/{name}", env, SCOPE)
        async with self.store.guard():
            outcome = await self.profiles.save(mode, owner, name, sealed, sorted(env), now_ms(), MAX_PROFILES)
            stored = await self.profiles.get(owner, name) if outcome == "ok" else None
        if outcome == "exists":
            raise Conflict(f"A profile named {name!r} exists; rotate it (PUT) or delete it first.")
        if outcome == "full":
            raise TooManyProfiles(f"This key keeps {MAX_PROFILES} profiles already; delete one first.")
        if stored is None:
            raise ProfileNotFound()
        log.info(f"profile {mode}", extra={"profile": name, "variables": len(env)})
        return _view(stored)

    async def create(self, caller: str | None, name: str, env: dict[str, str]) -> ProfileView:
        return await self._save("create", caller, name, env)

    async def rotate(self, caller: str | None, name: str, env: dict[str, str]) -> ProfileView:
        """Replace the profile's values (all of them: a variable left out is gone)."""
        return await self._save("rotate", caller, name, env)

    async def get(self, caller: str | None, name: str) -> ProfileView:
        async with self.store.guard():
            stored = await self.profiles.get(owner_of(caller), name)
        if stored is None:
            raise ProfileNotFound()
        return _view(stored)

    async def list(self, caller: str | None) -> list[ProfileView]:
        async with self.store.guard():
            return [_view(p) for p in await self.profiles.all(owner_of(caller))]

    async def delete(self, caller: str | None, name: str) -> None:
        async with self.store.guard():
            deleted = await self.profiles.delete(owner_of(caller), name)
        if not deleted:
            raise ProfileNotFound()
        log.info("profile delete", extra={"profile": name})

    async def values(self, caller: str | None, name: str) -> dict[str, str]:
        """The profile's variables, opened: for a job about to be sealed, nothing else."""
        owner = owner_of(caller)
        async with self.store.guard():
            stored = await self.profiles.get(owner, name)
        if stored is None:
            raise ProfileNotFound()
        return await asyncio.to_thread(self.box.open, f"{owner}/{name}", stored.sealed, SCOPE)
