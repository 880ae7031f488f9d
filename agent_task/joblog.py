"""A job's log: every line redacted, then written to the live log in Redis (a capped stream the API
follows) and to `log.jsonl` for the audit artifact (capped in bytes; what is dropped is counted).

Lines go live in small batches: a line waits at most FLUSH_AFTER_S for company (a timer, so the last line of
a burst is not held until the next one arrives), and a full batch goes at once. While Redis does not answer,
lines wait here in order (at most the stream's own cap: older ones would be trimmed from it anyway) and the
timer tries again, backing off to RETRY_MAX_S; logging never holds up or fails the job."""

from __future__ import annotations

import asyncio
import re
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
RETRY_MAX_S = 1.0
# Terminal control sequences (colours, cursor moves, titles): the CLI writes them to stderr whatever NO_COLOR
# says, and a log is read in a browser or a file, where they are noise. ECMA-48: CSI `ESC [ params final`, OSC
# `ESC ] … BEL|ST`, and the two-byte `ESC X` escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class JobLog:
    def __init__(
        self,
        jobs: JobStore,
        job_id: str,
        redact: Redactor,
        path: Path,
        max_bytes: int,
        max_lines: int = 5_000,
        attempt: int = 1,
    ) -> None:
        self.jobs, self.job_id, self.redact, self.attempt = jobs, job_id, redact, attempt
        self.path, self.max_bytes, self.max_lines = path, max_bytes, max_lines
        self._file = path.open("wb")
        self.written = 0
        self.dropped = 0
        self._pending: list[bytes] = []
        self._next_seq = 1  # the number of _pending[0]: a retried batch is recognised, never added twice
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one write at a time, so lines reach Redis in order
        self._failing = False  # the last write failed: the timer retries, lines only queue

    async def line(self, source: str, msg: str, level: str = "info", event: dict[str, Any] | None = None) -> None:
        """One line: `msg` (short, for people) goes live; `event` (the full CLI event) only to the artifact."""
        msg = self.redact(strip_ansi(msg))  # stripped first: a secret split by a colour code is still found
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
        if len(self._pending) > self.max_lines:
            self._next_seq += len(self._pending) - self.max_lines
            del self._pending[: -self.max_lines]
        if len(self._pending) >= BATCH_MAX and not self._failing and not self._lock.locked():
            try:
                await self.flush()
                return
            except Exception as exc:
                self._failed(exc)
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_soon())

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            logger.warning("live log write failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
        self._failing = True

    async def _flush_soon(self) -> None:
        delay = FLUSH_AFTER_S
        while True:
            await asyncio.sleep(delay)
            try:
                # Shielded: close() cancelling the timer mid-write waits for the write instead of repeating it.
                await asyncio.shield(self.flush())
            except Exception as exc:  # Redis away: the lines stay pending, in order; try again later
                self._failed(exc)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            if self._failing:
                logger.info("live log writes back", extra={"job_id": self.job_id})
            self._failing = False
            if not self._pending:
                self._timer = None
                return
            delay = FLUSH_AFTER_S

    async def flush(self) -> None:
        async with self._lock:
            if self._pending:
                lines, self._pending = self._pending, []
                first, self._next_seq = self._next_seq, self._next_seq + len(lines)
                try:
                    await self.jobs.append_log_once(self.job_id, self.attempt, first, lines)
                except BaseException:
                    self._pending[:0] = lines
                    self._next_seq = first
                    raise

    async def close(self, patience_s: float = 0.0) -> bytes:
        """Flush (retrying for up to `patience_s` while Redis does not answer) and return the artifact's bytes."""
        if self.dropped:
            note = log_entry(
                "runner", "warn", f"log capped at {self.max_bytes} bytes: {self.dropped} lines not kept in this file"
            )
            self._file.write(orjson.dumps(note) + b"\n")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + patience_s, FLUSH_AFTER_S
        self._file.close()
        while True:
            try:
                await self.flush()
                break
            except Exception as exc:
                self._failed(exc)
                if loop.time() + delay > give_up:
                    logger.warning("live log incomplete", extra={"job_id": self.job_id, "lines": len(self._pending)})
                    break  # the artifact still has every line
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
        return self.path.read_bytes()
