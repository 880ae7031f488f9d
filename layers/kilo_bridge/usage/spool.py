"""Settlements Redis refused, kept on this machine's disk until Redis takes them (usage/ledger.py replays them).

A billed call's record must outlive any Redis outage the process itself survives, and the process too: each
entry is one file, written to a temporary name, fsynced, renamed into place and the directory fsynced (POSIX's
atomic publication: a reader sees a whole entry or none, and a crash after `put` returns loses nothing).
Every web process of a machine shares the directory and any of them may replay any entry: replaying is
idempotent (the ledger counts an admission id once), and removing an entry another process removed first is
no error.

Why not a queue library: persist-queue's file queue is for one process (its SQLite queue and diskcache would
bring SQLite locking between uvicorn's worker processes); this needs no ordering, no acks and no index, only
"each record durable on its own, readable by whoever comes next", which a file per record is.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

SUFFIX = ".json"


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def put(self, entry: dict[str, Any]) -> Path:
        """Write one entry durably; returns its path. Raises OSError when the disk refuses it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        tmp = self.directory / (name + ".tmp")
        final = self.directory / (name + SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, orjson.dumps(entry))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._sync_directory()
        return final

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable only once the directory is
        finally:
            os.close(fd)

    def paths(self) -> list[Path]:
        """The entries waiting, oldest first (a half-written `.tmp` is not one)."""
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """An entry, or None when another process took it first."""
        try:
            value = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return value if isinstance(value, dict) else None

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)  # another process may have replayed and removed it first

    def __len__(self) -> int:
        return len(self.paths())
