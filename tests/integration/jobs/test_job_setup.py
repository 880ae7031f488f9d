"""A profile's setup commands run in the job's sandbox before the agent, logged live (`source: setup`); one
that fails ends the job `setup_failed` with its output's tail, and the agent never starts (real Redis, real git,
the runner in its own process, the stand-in CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job

pytestmark = pytest.mark.slow


def _lines(client: httpx.Client, job_id: str) -> list[tuple[str, str]]:
    return [
        (line["source"], line["msg"])
        for kind, data in log_events(client, job_id)
        if kind == "log"
        for line in [json.loads(data)]
    ]


def _run(client: httpx.Client, fake_github: FakeGitHub, name: str, setup: list[str]) -> dict[str, Any]:
    profile = {"name": name, "env": {"GITHUB_TOKEN": GITHUB_TOKEN}, "setup": setup}
    saved = client.post("/api/kilo/profiles", json=profile)
    assert saved.status_code == 201, saved.text
    assert saved.json()["setup"] == setup
    body = run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profile=name)
    answer = client.post("/api/kilo/run-agent", json=body)
    assert answer.status_code == 202, answer.text
    return wait_job(client, answer.json()["jobId"])


def test_setup_commands_run_before_the_agent_and_are_logged(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings()), timeout=10)
    job = _run(
        client, fake_github, "ready", ["echo preparing the checkout", "test -f README.md && echo in the checkout"]
    )
    assert job["status"] == "succeeded", (job["reason"], job["error"])
    lines = _lines(client, job["id"])
    setup = [msg for source, msg in lines if source == "setup"]
    assert setup == [
        "$ echo preparing the checkout",
        "preparing the checkout",
        "$ test -f README.md && echo in the checkout",
        "in the checkout",
    ]
    first_setup = lines.index(("setup", "$ echo preparing the checkout"))
    assert all(source != "kilo" for source, _ in lines[:first_setup])  # before the agent


def test_a_failing_setup_command_ends_the_job_setup_failed(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings()), timeout=10)
    job = _run(client, fake_github, "broken", ["echo fine", "echo no such package >&2; exit 3", "echo never"])
    assert (job["status"], job["reason"]) == ("failed", "setup_failed"), job
    assert "setup command 2 of 3 exited 3" in job["error"] and "no such package" in job["error"]
    lines = _lines(client, job["id"])
    assert ("setup", "never") not in lines
    assert not [source for source, _ in lines if source in ("kilo", "kilo-stderr")]  # the agent never started
