"""A job's log: every line redacted, then written to the live log in Redis (a capped stream the API
follows) and to `log.jsonl` for the audit artifact (capped in bytes; what is dropped is counted).

Lines go live in small batches: a line waits at most FLUSH_AFTER_S for company (a timer, so the last line of
a burst is not held until the next one arrives), and a full batch goes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from kilo_bridge.jobs.record import log_entry
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.security import Redactor

logger = get_logger()

FLUSH_AFTER_S = 0.1
BATCH_MAX = 200
MAX_MSG = 4_000


class JobLog:
    def __init__(self, jobs: JobStore, job_id: str, redact: Redactor, path: Path, max_bytes: int) -> None:
        self.jobs, self.job_id, self.redact = jobs, job_id, redact
        self.path, self.max_bytes = path, max_bytes
        self._file = path.open("wb")
        self.written = 0
        self.dropped = 0
        self._pending: list[bytes] = []
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one write at a time, so lines reach Redis in order

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
        if len(self._pending) >= BATCH_MAX:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_AFTER_S)
        self._timer = None
        try:
            # Shielded: close() cancelling the timer mid-write waits for the write instead of repeating it.
            await asyncio.shield(self.flush())
        except Exception as exc:  # Redis away: the lines stay pending; the next flush (or close) tries again
            logger.warning("live log write failed", extra={"job_id": self.job_id, "error": type(exc).__name__})

    async def flush(self) -> None:
        async with self._lock:
            if self._pending:
                lines, self._pending = self._pending, []
                try:
                    await self.jobs.append_log(self.job_id, lines)
                except BaseException:
                    self._pending[:0] = lines
                    raise

    async def close(self) -> bytes:
        """Flush and return the artifact's bytes."""
        if self.dropped:
            note = log_entry(
                "runner", "warn", f"log capped at {self.max_bytes} bytes: {self.dropped} lines not kept in this file"
            )
            self._file.write(orjson.dumps(note) + b"\n")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        self._file.close()
        return self.path.read_bytes()
