"""`EndReason` is the one list of the reasons a job ends with: each member has its meaning, and the API's
description of `reason` names every member."""

from __future__ import annotations

from kilo_bridge.jobs.models import JobView
from kilo_bridge.jobs.reasons import DESCRIPTIONS, FAILURE_REASONS, EndReason


def test_every_reason_has_its_meaning() -> None:
    assert set(DESCRIPTIONS) == set(EndReason)
    assert {reason.value: DESCRIPTIONS[reason] for reason in EndReason} == FAILURE_REASONS


def test_the_api_names_every_reason() -> None:
    description = JobView.model_json_schema(by_alias=True)["properties"]["reason"]["description"]
    assert all(reason.value in description for reason in EndReason)
