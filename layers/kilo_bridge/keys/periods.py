"""Budget periods: a key's (or a team's) budget may reset at 00:00 UTC each day, week (Monday) or month.

A period is named by its start in epoch milliseconds. Admission is handed the three possible starts for its
own "now" (the caller's clock, which tests move), and the script picks the one its key asks for: the key's
period is read inside the same atomic step as its budget.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

BudgetPeriod = Literal["day", "week", "month"]
PERIODS: tuple[BudgetPeriod, ...] = ("day", "week", "month")
DAY_MS = 86_400_000

# (epoch day, its starts) of the last call: admission asks for them on every request.
_CACHE: list[object] = [-1, (0, 0, 0)]


def starts_ms(now_s: float) -> tuple[int, int, int]:
    """The starts (epoch ms) of the day, the week (Monday) and the month that contain `now_s`, UTC."""
    day = int(now_s // 86_400)
    if day != _CACHE[0]:
        monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        first = (date.replace(day=1) - dt.date(1970, 1, 1)).days
        _CACHE[:] = [day, (day * DAY_MS, monday * DAY_MS, first * DAY_MS)]
    starts = _CACHE[1]
    assert isinstance(starts, tuple)
    return starts


def start_ms(period: str, now_s: float) -> int:
    return starts_ms(now_s)[("day", "week", "month").index(period)]


def next_start_ms(period: str, now_s: float) -> int:
    """When the period that contains `now_s` ends (the next reset), epoch ms."""
    begin = dt.datetime.fromtimestamp(start_ms(period, now_s) / 1000, dt.UTC)
    if period == "day":
        end = begin + dt.timedelta(days=1)
    elif period == "week":
        end = begin + dt.timedelta(days=7)
    else:
        end = (begin.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return int(end.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
