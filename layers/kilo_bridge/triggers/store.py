"""Triggers in Redis. Key families spelled here:

- `trigger:<id>` (a hash: owner, agent, repo_url, template, profile, max_cost_usd, base_branch, dry_run, name,
  sealed secret, created_ms) and `triggers:<owner>` (the owner's ids; `open` on an open server);
- `trigger:deliveries:<id>` (a list of the last deliveries, JSON, newest first);
- `trigger:seen:<id>:<signature digest>` (a call seen, kept as long as its timestamp is fresh: no replay);
- `trigger:rate:<id>:<minute>` (verified calls in that minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from kilo_bridge.platform.redis import Store, lua

_LUA = Path(__file__).parent / "lua"
_CREATE, _DELETE, _ADMIT, _RECORD, _ROTATE = (lua(_LUA, n) for n in ("create", "delete", "admit", "record", "rotate"))
OPEN_OWNER = "open"
KEEP_DELIVERIES = 20


@dataclass(frozen=True, slots=True)
class StoredTrigger:
    id: str
    owner: str
    name: str
    agent: str
    repo_url: str
    template: str
    profile: str | None
    max_cost_usd: float | None
    base_branch: str | None
    created_ms: int
    sealed: str
    dry_run: bool = False


class TriggerStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _key(self, trigger_id: str) -> str:
        return self.store.key("trigger", trigger_id)

    def _ids(self, owner: str) -> str:
        return self.store.key("triggers", owner)

    def _deliveries(self, trigger_id: str) -> str:
        return self.store.key("trigger", "deliveries", trigger_id)

    async def create(self, t: StoredTrigger, max_triggers: int) -> bool:
        fields: dict[str, Any] = {
            "owner": t.owner,
            "name": t.name,
            "agent": t.agent,
            "repo_url": t.repo_url,
            "template": t.template,
            "profile": t.profile or "",
            "max_cost_usd": "" if t.max_cost_usd is None else repr(t.max_cost_usd),
            "base_branch": t.base_branch or "",
            "dry_run": int(t.dry_run),
            "created_ms": t.created_ms,
            "sealed": t.sealed,
        }
        args: list[Any] = [t.id, max_triggers]
        for name, value in fields.items():
            args += [name, value]
        return str(await self.store.run(_CREATE, [self._key(t.id), self._ids(t.owner)], args)) == "ok"

    async def get(self, trigger_id: str) -> StoredTrigger | None:
        raw = await self.store.hash(self._key(trigger_id))
        return _decode(trigger_id, raw) if raw else None

    async def all(self, owner: str) -> list[StoredTrigger]:
        ids = sorted(await self.store.members(self._ids(owner)))
        raws = await self.store.hashes(self._key(i) for i in ids)
        found = [_decode(i, raw) for i, raw in zip(ids, raws, strict=True) if raw]
        return sorted(found, key=lambda t: t.created_ms)

    async def delete(self, owner: str, trigger_id: str) -> bool:
        keys = [self._key(trigger_id), self._ids(owner), self._deliveries(trigger_id)]
        return bool(await self.store.run(_DELETE, keys, [trigger_id]))

    async def rotate(self, trigger_id: str, sealed: str) -> bool:
        """A new sealed secret for an existing trigger (False: it is gone)."""
        return bool(await self.store.run(_ROTATE, [self._key(trigger_id)], [sealed]))

    async def admit(
        self, trigger_id: str, signature_digest: str, minute: int, limit: int, seen_ttl_s: int
    ) -> tuple[str, int]:
        """`ok` | `replayed` | `limited` (and the seconds until the window ends)."""
        keys = [
            self.store.key("trigger", "seen", trigger_id, signature_digest),
            self.store.key("trigger", "rate", trigger_id, str(minute)),
        ]
        verdict = cast(list[Any], await self.store.run(_ADMIT, keys, [limit, 61, seen_ttl_s]))
        return str(verdict[0]), int(verdict[1]) if len(verdict) > 1 else 0

    async def record(self, trigger_id: str, entry: dict[str, Any]) -> None:
        await self.store.run(_RECORD, [self._deliveries(trigger_id)], [orjson.dumps(entry), KEEP_DELIVERIES])

    async def deliveries(self, trigger_id: str) -> list[dict[str, Any]]:
        raw = cast(list[str], await self.store.call("LRANGE", self._deliveries(trigger_id), 0, KEEP_DELIVERIES - 1))
        return [cast(dict[str, Any], orjson.loads(r)) for r in raw]


def _decode(trigger_id: str, raw: dict[str, str]) -> StoredTrigger:
    cost = raw.get("max_cost_usd") or ""
    return StoredTrigger(
        id=trigger_id,
        owner=raw.get("owner", ""),
        name=raw.get("name", ""),
        agent=raw.get("agent", ""),
        repo_url=raw.get("repo_url", ""),
        template=raw.get("template", ""),
        profile=raw.get("profile") or None,
        max_cost_usd=float(cost) if cost else None,
        base_branch=raw.get("base_branch") or None,
        created_ms=int(raw.get("created_ms") or 0),
        sealed=raw.get("sealed", ""),
        dry_run=raw.get("dry_run") == "1",
    )
