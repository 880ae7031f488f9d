"""The clock as the records store it: epoch milliseconds, shown as ISO 8601 UTC."""

from __future__ import annotations

import datetime as dt
import time


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | str | None) -> str | None:
    if ms in (None, "", "0", 0):
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
