"""Schedules in Redis. Key families spelled here: `schedule:<id>` (a hash: owner, name, cron, tz, state, run
JSON, created_ms) and `schedules:<owner>` (the owner's ids; `open` on an open server)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from kilo_bridge.platform.redis import Store, lua

_LUA = Path(__file__).parent / "lua"
_CREATE, _DELETE = lua(_LUA, "create"), lua(_LUA, "delete")
OPEN_OWNER = "open"


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    id: str
    owner: str
    name: str
    cron: str
    tz: str
    state: str  # enabled | paused
    run: dict[str, Any]
    created_ms: int


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _key(self, schedule_id: str) -> str:
        return self.store.key("schedule", schedule_id)

    def _ids(self, owner: str) -> str:
        return self.store.key("schedules", owner)

    async def create(self, s: StoredSchedule, max_schedules: int) -> bool:
        fields = {
            "owner": s.owner,
            "name": s.name,
            "cron": s.cron,
            "tz": s.tz,
            "state": s.state,
            "run": orjson.dumps(s.run),
            "created_ms": s.created_ms,
        }
        args: list[Any] = [s.id, max_schedules]
        for name, value in fields.items():
            args += [name, value]
        return str(await self.store.run(_CREATE, [self._key(s.id), self._ids(s.owner)], args)) == "ok"

    async def get(self, schedule_id: str) -> StoredSchedule | None:
        raw = await self.store.hash(self._key(schedule_id))
        return _decode(schedule_id, raw) if raw else None

    async def all(self, owner: str) -> list[StoredSchedule]:
        ids = sorted(await self.store.members(self._ids(owner)))
        raws = await self.store.hashes(self._key(i) for i in ids)
        return sorted((_decode(i, r) for i, r in zip(ids, raws, strict=True) if r), key=lambda s: s.created_ms)

    async def set_state(self, schedule_id: str, state: str) -> None:
        await self.store.call("HSET", self._key(schedule_id), "state", state)

    async def delete(self, owner: str, schedule_id: str) -> bool:
        return bool(await self.store.run(_DELETE, [self._key(schedule_id), self._ids(owner)], [schedule_id]))


def _decode(schedule_id: str, raw: dict[str, str]) -> StoredSchedule:
    return StoredSchedule(
        id=schedule_id,
        owner=raw.get("owner", ""),
        name=raw.get("name", ""),
        cron=raw.get("cron", ""),
        tz=raw.get("tz", "UTC"),
        state=raw.get("state", "enabled"),
        run=cast(dict[str, Any], orjson.loads(raw.get("run") or "{}")),
        created_ms=int(raw.get("created_ms") or 0),
    )
