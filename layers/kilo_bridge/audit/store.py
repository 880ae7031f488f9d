"""The audit log: one append-only record per administrative change, in a Redis stream.

Owns the key family `audit` (a stream: appended with XADD, never edited; entries older than the retention are
trimmed by the next append, MINID). A record holds who, what, when, from where, and the names of the fields a
request sent — never a value that could be a secret (profile variables, trigger secrets, keys).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kilo_bridge.platform.redis import Store, lua

_APPEND = lua(Path(__file__).parent / "lua", "append")

MAX_PAGE = 200
SCAN_BATCH = 500
MAX_SCANNED = 20_000  # a filtered read looks this far back at most per page


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    target: str = ""
    fields: tuple[str, ...] = ()
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    outcome: str = "ok"


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None  # exact, or a prefix ending in `.` (`key.`)
    actor: str | None = None
    target: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, raw: dict[str, str]) -> bool:
        action = raw.get("action", "")
        if self.action and not (
            action == self.action or (self.action.endswith(".") and action.startswith(self.action))
        ):
            return False
        return (self.actor in (None, raw.get("actor"))) and (self.target in (None, raw.get("target")))


def _stream_id(ms: int, last: bool = False) -> str:
    # A time before 1970 bounds nothing (stream ids are never negative): the stream's first id.
    return f"{max(ms, 0)}-{18446744073709551615 if last else 0}"


def iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, store: Store, retention_days: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retention_ms = retention_days * 86_400_000
        self.clock = clock

    def _key(self) -> str:
        return self.store.key("audit")

    async def append(self, entry: AuditEntry) -> str:
        now_ms = int(self.clock() * 1000)
        values = {
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target[:200],
            "fields": ",".join(entry.fields)[:1000],
            "ip": entry.ip[:64],
            "user_agent": entry.user_agent[:200],
            "request_id": entry.request_id[:128],
            "outcome": entry.outcome,
        }
        args: list[Any] = [now_ms, now_ms - self.retention_ms]
        for name, value in values.items():
            args += [name, value]
        async with self.store.guard():
            return str(await self.store.run(_APPEND, [self._key()], args))

    async def read(
        self, where: AuditFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
        """Newest first: (records matching `where`, the cursor of the next page or None)."""
        limit = max(1, min(limit, MAX_PAGE))
        if cursor is not None and not any(int(part) for part in cursor.split("-")):
            return [], None  # nothing comes before the stream's first id (Redis refuses the range)
        oldest = int(self.clock() * 1000) - self.retention_ms
        if where.since_ms is not None:
            oldest = max(oldest, where.since_ms)
        start = f"({cursor}" if cursor else (_stream_id(where.until_ms, True) if where.until_ms is not None else "+")
        out: list[tuple[str, dict[str, str]]] = []
        scanned = 0
        async with self.store.guard():
            while len(out) < limit and scanned < MAX_SCANNED:
                rows = cast(
                    list[Any],
                    await self.store.call("XREVRANGE", self._key(), start, _stream_id(oldest), "COUNT", SCAN_BATCH),
                )
                if not rows:
                    return out, None
                for entry_id, flat in rows:
                    scanned += 1
                    raw = dict(zip(flat[::2], flat[1::2], strict=True))
                    if where.matches(raw):
                        out.append((entry_id, raw))
                        if len(out) == limit:
                            return out, entry_id
                start = f"({rows[-1][0]}"
                if len(rows) < SCAN_BATCH:
                    return out, None
        return out, start[1:]
