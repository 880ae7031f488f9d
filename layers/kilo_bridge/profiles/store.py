"""Saved profiles in Redis: each a hash of its sealed values, its variable names and its times.

Key families spelled here: `profile:<owner>:<name>` (a hash: sealed, variables, setup, created_ms, updated_ms) and
`profiles:<owner>` (the owner's names). The owner is an API key's digest, or `open` on an open server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson

from kilo_bridge.platform.redis import Store, lua

_LUA = Path(__file__).parent / "lua"
_SAVE, _DELETE = lua(_LUA, "save"), lua(_LUA, "delete")
OPEN_OWNER = "open"


@dataclass(frozen=True, slots=True)
class StoredProfile:
    name: str
    variables: list[str]
    created_ms: int
    updated_ms: int
    sealed: str
    setup: list[str]


class ProfileStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _key(self, owner: str, name: str) -> str:
        return self.store.key("profile", owner, name)

    def _names(self, owner: str) -> str:
        return self.store.key("profiles", owner)

    async def save(
        self,
        mode: str,
        owner: str,
        name: str,
        sealed: str,
        variables: list[str],
        now_ms: int,
        max_profiles: int,
        setup: list[str] | None = None,
    ) -> str:
        """`create` or `rotate` → ok | exists | full | missing. `setup` None: the stored commands are kept."""
        keys = [self._key(owner, name), self._names(owner)]
        kept = "" if setup is None else orjson.dumps(setup)
        args = [mode, name, sealed, orjson.dumps(variables), now_ms, max_profiles, kept]
        return str(await self.store.run(_SAVE, keys, args))

    async def get(self, owner: str, name: str) -> StoredProfile | None:
        raw = await self.store.hash(self._key(owner, name))
        return _decode(name, raw) if raw else None

    async def names(self, owner: str) -> list[str]:
        return sorted(await self.store.members(self._names(owner)))

    async def all(self, owner: str) -> list[StoredProfile]:
        names = await self.names(owner)
        raws = await self.store.hashes(self._key(owner, n) for n in names)
        return [_decode(n, raw) for n, raw in zip(names, raws, strict=True) if raw]

    async def delete(self, owner: str, name: str) -> bool:
        return bool(await self.store.run(_DELETE, [self._key(owner, name), self._names(owner)], [name]))


def _decode(name: str, raw: dict[str, str]) -> StoredProfile:
    return StoredProfile(
        name=name,
        variables=cast(list[str], orjson.loads(raw.get("variables") or "[]")),
        created_ms=int(raw.get("created_ms") or 0),
        updated_ms=int(raw.get("updated_ms") or 0),
        sealed=raw.get("sealed", ""),
        setup=cast(list[str], orjson.loads(raw.get("setup") or "[]")),
    )
