"""Cron expressions a schedule may use: five fields, a real time zone, at most one run every 10 minutes;
and the same expression in EventBridge Scheduler's dialect."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kilo_bridge.errors import InvalidInput, invalid
from kilo_bridge.platform.lazy import lazy_module

if TYPE_CHECKING:
    import croniter
else:  # loaded on first use: only a route or task that reads a cron expression pays for it (~5 ms)
    croniter = lazy_module("croniter")

MIN_GAP_S = 600
# Five fields of cron's characters, for the OpenAPI document; the rules below (real values, one day field, the
# gap) are stated in words there (RULES).
PATTERN = r"^ *[0-9A-Za-z*/,?#-]+(?: +[0-9A-Za-z*/,?#-]+){4} *$"
RULES = (
    "Five fields (minute hour day-of-month month day-of-week) with values in range; a day of the month or a day "
    f"of the week, not both; a day-of-week range does not cross Sunday; at most one run every {MIN_GAP_S // 60} "
    "minutes."
)


def timezone_schema(schema: dict[str, Any]) -> None:
    """The IANA zones this server knows, for the OpenAPI document (read when the document is built)."""
    import zoneinfo

    schema["enum"] = sorted(zoneinfo.available_timezones())


_LOOKAHEAD = 500  # fire times checked for the gap: a pattern's tightest spot shows up well within these


def check(cron: str, tz: str) -> None:
    fields = cron.split()
    if len(fields) != 5 or not croniter.croniter.is_valid(cron):
        raise invalid("cron", "five fields: minute hour day-of-month month day-of-week")
    if fields[2] != "*" and fields[4] != "*":
        raise invalid("cron", "give a day of the month or a day of the week, not both")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("timezone", "an IANA time zone such as UTC or Europe/Berlin") from None
    itr = croniter.croniter(cron, dt.datetime.now(zone))
    previous = itr.get_next(dt.datetime)
    for _ in range(_LOOKAHEAD):
        current = itr.get_next(dt.datetime)
        if (current - previous).total_seconds() < MIN_GAP_S:
            raise invalid("cron", f"runs at most every {MIN_GAP_S // 60} minutes")
        previous = current


def next_run(cron: str, tz: str) -> dt.datetime:
    return croniter.croniter(cron, dt.datetime.now(ZoneInfo(tz))).get_next(dt.datetime)  # type: ignore[no-any-return]


def _dow(field: str) -> str:
    # cron counts Sunday as 0 (or 7), EventBridge as 1: shift each number; names mean the same in both.
    out = re.sub(r"\d+", lambda m: str(int(m.group(0)) % 7 + 1), field)
    for a, b in re.findall(r"(\d+)-(\d+)", out):
        if int(a) > int(b):
            raise InvalidInput("cron: a day-of-week range across Sunday; use names (SAT-SUN is two days: SAT,SUN)")
    return out


def eventbridge(cron: str) -> str:
    """`cron(minute hour day-of-month month day-of-week year)`, with the `?` EventBridge wants on one day field."""
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        dow = "?"
    else:
        dom, dow = "?", _dow(dow)
    return f"cron({minute} {hour} {dom} {month} {dow} *)"
