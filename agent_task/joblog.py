"""A job's log: every line redacted, then written to the live log in Redis (a capped stream the API
follows) and to `log.jsonl` for the audit artifact (capped in bytes; what is dropped is counted)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from kilo_bridge.jobs.record import log_entry
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.platform.security import Redactor

FLUSH_EVERY_S = 0.25
MAX_MSG = 4_000


class JobLog:
    def __init__(self, jobs: JobStore, job_id: str, redact: Redactor, path: Path, max_bytes: int) -> None:
        self.jobs, self.job_id, self.redact = jobs, job_id, redact
        self.path, self.max_bytes = path, max_bytes
        self._file = path.open("wb")
        self.written = 0
        self.dropped = 0
        self._pending: list[bytes] = []
        self._last_flush = time.monotonic()

    async def line(self, source: str, msg: str, level: str = "info", event: dict[str, Any] | None = None) -> None:
        """One line: `msg` (short, for people) goes live; `event` (the full CLI event) only to the artifact."""
        msg = self.redact(msg)
        if len(msg) > MAX_MSG:
            msg = msg[:MAX_MSG] + f"… [{len(msg) - MAX_MSG} more characters]"
        entry = log_entry(source, level, msg)
        live = orjson.dumps(entry)
        if event is not None:
            entry["event"] = event
        full = self.redact(orjson.dumps(entry).decode()).encode() + b"\n"
        if self.written + len(full) <= self.max_bytes:
            self._file.write(full)
            self.written += len(full)
        else:
            self.dropped += 1
        self._pending.append(live)
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S or len(self._pending) >= 200:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            lines, self._pending = self._pending, []
            await self.jobs.append_log(self.job_id, lines)

    async def close(self) -> bytes:
        """Flush and return the artifact's bytes."""
        if self.dropped:
            note = log_entry(
                "runner", "warn", f"log capped at {self.max_bytes} bytes: {self.dropped} lines not kept in this file"
            )
            self._file.write(orjson.dumps(note) + b"\n")
        await self.flush()
        self._file.close()
        return self.path.read_bytes()
