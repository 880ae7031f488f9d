"""Schedule crons: five fields, a real zone, at most every 10 minutes; EventBridge's dialect derived right."""

from __future__ import annotations

import pytest

from kilo_bridge.errors import InvalidInput
from kilo_bridge.schedules.cron import check, eventbridge


@pytest.mark.parametrize(
    ("cron", "tz"),
    [
        ("*/10 * * * *", "UTC"),
        ("0 3 * * 1-5", "Europe/Berlin"),
        ("30 2 1 * *", "America/New_York"),
        ("0 0 * * SUN", "UTC"),
    ],
)
def test_crons_it_takes(cron: str, tz: str) -> None:
    check(cron, tz)


@pytest.mark.parametrize(
    ("cron", "tz", "field"),
    [
        ("*/5 * * * *", "UTC", "cron"),  # every 5 minutes
        ("0,5 * * * *", "UTC", "cron"),  # twice an hour, 5 minutes apart
        ("* 3 * * *", "UTC", "cron"),  # every minute of one hour
        ("0 3 * * * *", "UTC", "cron"),  # six fields
        ("0 3 1 * 1", "UTC", "cron"),  # a day of the month and of the week
        ("nonsense", "UTC", "cron"),
        ("0 3 * * *", "Mars/Olympus", "timezone"),
    ],
)
def test_crons_it_refuses(cron: str, tz: str, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check(cron, tz)
    assert refused.value.details[0]["field"] == field


def test_eventbridge_expressions() -> None:
    assert eventbridge("0 3 * * *") == "cron(0 3 * * ? *)"
    assert eventbridge("30 2 1 * *") == "cron(30 2 1 * ? *)"
    assert eventbridge("0 3 * * 1-5") == "cron(0 3 ? * 2-6 *)"  # Monday is 1 in cron, 2 in EventBridge
    assert eventbridge("0 0 * * 0") == eventbridge("0 0 * * 7") == "cron(0 0 ? * 1 *)"
    assert eventbridge("0 0 * * MON,FRI") == "cron(0 0 ? * MON,FRI *)"
    with pytest.raises(InvalidInput):
        eventbridge("0 0 * * 5-7")  # a range across Sunday has no EventBridge spelling in numbers
