"""`kilo-bridge jobs follow-up` and `jobs say` as a user runs them (a subprocess), against a real server running
real jobs (the stand-in agent): the follow-up's link, its place in the thread, and a message to an ended job
refused with the way on."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from kilo_bridge.config import Settings
from tests.e2e.test_terminal_client import REFUSED, kb, submit_args
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN


@pytest.fixture
def server(serve: Callable[..., str], job_settings: Callable[..., Settings]) -> str:
    return serve(job_settings())


def test_follow_up_continues_a_finished_job_and_say_points_an_ended_one_to_it(
    server: str, fake_github: FakeGitHub
) -> None:
    done = kb(server, *submit_args(fake_github, "--follow"), GITHUB_TOKEN=GITHUB_TOKEN, FAKE_KILO_MODE="write")
    assert done.returncode == 0, done.stderr
    parent = done.stdout.splitlines()[0].split()[0]

    told = kb(server, "jobs", "say", parent, "one more thing")
    assert told.returncode == REFUSED and "follow it up" in told.stderr, told.stderr

    followed = kb(server, "jobs", "follow-up", parent, "now the next step", "--dry-run", "--follow")
    assert followed.returncode == 0, followed.stderr
    child, follows, shown_parent, link = followed.stdout.splitlines()[0].split()
    assert (follows, shown_parent) == ("follows", parent) and link == f"{server}/api/kilo/job/{child}"
    assert f"job {child} succeeded" in followed.stderr

    view = json.loads(kb(server, "jobs", "show", child, "--json").stdout)
    assert view["parentJobId"] == parent
    assert [(t["jobId"], t["prompt"]) for t in view["thread"]] == [
        (parent, "make a change"),
        (child, "now the next step"),
    ]
    text = kb(server, "jobs", "show", child).stdout
    assert f"follows:      {parent}" in text and "thread:       2 jobs" in text and "now the next step" in text
