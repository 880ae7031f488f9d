"""Which firing a functions/scheduled delivery is: the time Scheduler scheduled it for, so its retries are one run."""

from __future__ import annotations

import datetime as dt

from kilo_bridge.scheduled_tasks import firing


def test_the_scheduled_time_names_the_firing_in_utc_to_the_minute() -> None:
    assert firing({"scheduledTime": "2026-12-03T02:00:41Z"}) == "202612030200"
    assert firing({"scheduledTime": "2026-12-03T03:00:00+01:00"}) == "202612030200"  # the same instant


def test_without_a_filled_in_time_the_current_minute_names_it() -> None:
    for event in (
        {},
        {"scheduledTime": "<aws.scheduler.scheduled-time>"},  # not substituted (an event made by hand)
        {"scheduledTime": "2026-12-03T02:00:00"},  # no zone: not Scheduler's
        {"scheduledTime": 1764727200},
    ):
        before = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")
        got = firing(event)
        after = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")
        assert got in (before, after), event
