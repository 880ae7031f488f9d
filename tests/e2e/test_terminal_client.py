"""`kilo-bridge jobs …` and `kilo-bridge generate` as a user runs them (a subprocess), against a real server
running real jobs (the stand-in agent): what they print and the exit code that says how each job ended."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN

FAILED, TIMED_OUT, CANCELLED, REFUSED = 1, 3, 4, 5


def kb(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kilo_bridge", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def server(serve: Callable[..., str], job_settings: Callable[..., Settings]) -> str:
    return serve(job_settings())


def submit_args(fake_github: FakeGitHub, *extra: str) -> list[str]:
    return [
        "jobs",
        "submit",
        "--repo",
        fake_github.repo_url("acme", "widgets"),
        "--agent",
        "apply-patch-and-pr",
        "--prompt",
        "make a change",
        "--dry-run",
        "--env",
        "GITHUB_TOKEN",
        "--env",
        "FAKE_KILO_MODE",
        *extra,
    ]


def test_submit_follow_streams_the_log_and_exits_0_on_success(server: str, fake_github: FakeGitHub) -> None:
    done = kb(server, *submit_args(fake_github, "--follow"), GITHUB_TOKEN=GITHUB_TOKEN, FAKE_KILO_MODE="write")
    assert done.returncode == 0, done.stderr
    first, *log = done.stdout.splitlines()
    job_id, status, link = first.split()
    assert status == "queued" and link == f"{server}/api/kilo/job/{job_id}"
    assert any("job ended succeeded" in line for line in log)  # the live log, line by line
    assert "-- running" in done.stderr and f"job {job_id} succeeded" in done.stderr  # progress lines, outcome
    assert GITHUB_TOKEN not in done.stdout + done.stderr
    # Then the other commands on the same job.
    shown = kb(server, "jobs", "show", job_id, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "succeeded"
    assert "status:       succeeded" in kb(server, "jobs", "show", job_id).stdout
    # The end of --follow tells what came of it: the outcome, summary, files and diff stat.
    story = done.stderr[done.stderr.index(f"job {job_id} succeeded") :]
    assert "outcome:      dry run: diff kept, nothing pushed" in story
    assert "summary:" in story and "files:" in story and "diff stat:    1 files, +" in story
    # `jobs show` tells the whole story: the task, dry run, times and each phase's duration.
    shown_text = kb(server, "jobs", "show", job_id).stdout
    for row in ("task:         make a change", "dry run:      yes", "started:", "finished:", "duration:", "phases:"):
        assert row in shown_text, shown_text
    assert "queued " in shown_text and "cloning " in shown_text and "agent " in shown_text
    assert "heartbeat:" not in shown_text and "progress:" not in shown_text  # an ended job has neither
    listed = kb(server, "jobs", "list", "--json", "--status", "succeeded")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    assert job_id in kb(server, "jobs", "list").stdout
    replay = kb(server, "jobs", "logs", job_id, "--json")  # a finished job's log, then its end
    events = [json.loads(line) for line in replay.stdout.splitlines()]
    assert (
        replay.returncode == 0
        and events[0]["event"] == "status"
        and events[-1] == {"event": "end", "status": "succeeded", "reason": None}
    )
    assert sum(e["event"] == "end" for e in events) == 1


@pytest.mark.parametrize(
    ("mode", "extra", "code", "status"),
    [
        ("fail", (), FAILED, "failed"),
        ("sleep", ("--timeout-s", "1"), TIMED_OUT, "timed_out"),
    ],
)
def test_a_followed_job_that_does_not_succeed_sets_its_own_exit_code(
    server: str, fake_github: FakeGitHub, mode: str, extra: tuple[str, ...], code: int, status: str
) -> None:
    done = kb(server, *submit_args(fake_github, "--follow", *extra), GITHUB_TOKEN=GITHUB_TOKEN, FAKE_KILO_MODE=mode)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert f"kilo-bridge: job {done.stdout.split()[0]} {status}\n" in done.stderr


def test_follow_prints_a_line_per_change_never_one_per_heartbeat(server: str, fake_github: FakeGitHub) -> None:
    """A job that runs a while sends its status again with each heartbeat (every few seconds on the stream);
    only a change of status, phase or progress is a line. It ends timed out: its progress is not full."""
    done = kb(
        server,
        *submit_args(fake_github, "--follow", "--timeout-s", "12"),
        GITHUB_TOKEN=GITHUB_TOKEN,
        FAKE_KILO_MODE="sleep",
    )
    assert done.returncode == TIMED_OUT, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("-- ")]
    assert progress and len(progress) == len(set(progress)), progress
    job_id = done.stdout.split()[0]
    job = json.loads(kb(server, "jobs", "show", job_id, "--json").stdout)
    assert job["status"] == "timed_out" and job["progress"] < 100 and "outcome:      timed out" in done.stderr


def test_a_cancelled_job_exits_4_and_jobs_cancel_stops_it(server: str, fake_github: FakeGitHub) -> None:
    args = [sys.executable, "-m", "kilo_bridge", *submit_args(fake_github, "--follow"), "--url", server]
    env = {**os.environ, "GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "sleep"}
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as follower:
        assert follower.stdout is not None
        job_id = follower.stdout.readline().split()[0]
        for line in follower.stdout:
            if "thinking for a long time" in line:  # the agent is at work (the log is live)
                break
        cancelled = kb(server, "jobs", "cancel", job_id)
        assert cancelled.returncode == 0 and cancelled.stdout.startswith(job_id)
        assert follower.wait(60) == CANCELLED


def test_generate_streams_the_answer(server: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "ok", "text": "streamed answer here", "chunks": 3}])
    done = kb(server, "generate", "say something")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "streamed answer here\n" and "tokens" in done.stderr
    fake.script([{"kind": "ok", "text": "as json"}])
    assert json.loads(kb(server, "generate", "again", "--json").stdout)["text"] == "as json"


def test_refusals_and_an_unreachable_server_exit_5_and_the_key_comes_from_the_environment(
    serve: Callable[..., str], job_settings: Callable[..., Settings]
) -> None:
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store

    settings = job_settings(auth_required=True)

    async def make_key() -> str:
        store = Store(settings)
        try:
            return (await KeyStore(store).create("cli"))[0]
        finally:
            await store.close()

    key = asyncio.run(make_key())
    url = serve(settings)
    refused = kb(url, "jobs", "list", KILO_BRIDGE_KEY="")
    assert refused.returncode == REFUSED and "HTTP 401" in refused.stderr
    assert kb(url, "jobs", "list", KILO_BRIDGE_KEY=key).returncode == 0
    missing = kb(url, "jobs", "show", "job_nope", KILO_BRIDGE_KEY=key)
    assert missing.returncode == REFUSED and "HTTP 404" in missing.stderr
    gone = kb("http://127.0.0.1:9", "jobs", "list")  # a port nothing listens on
    assert gone.returncode == REFUSED and "cannot reach" in gone.stderr


def test_env_names_a_variable_that_is_not_set(server: str, fake_github: FakeGitHub) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if k != "FAKE_KILO_MODE"}
    done = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", *submit_args(fake_github), "--url", server],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "GITHUB_TOKEN": GITHUB_TOKEN},
    )
    assert done.returncode == 2 and "FAKE_KILO_MODE" in done.stderr
    assert httpx.get(server + "/api/kilo/jobs").json()["jobs"] == []  # nothing was submitted


def test_submit_sends_a_patch_file_and_the_job_applies_it(server: str, fake_github: FakeGitHub, tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text(
        "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n"
        " # demo\n+From a patch file.\n"
    )
    done = kb(
        server,
        *submit_args(fake_github, "--patch", str(patch), "--follow"),
        GITHUB_TOKEN=GITHUB_TOKEN,
        FAKE_KILO_MODE="write",
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "patch applied cleanly" in done.stdout
    missing = kb(
        server,
        *submit_args(fake_github, "--patch", str(tmp_path / "nope.patch")),
        GITHUB_TOKEN=GITHUB_TOKEN,
        FAKE_KILO_MODE="write",
    )
    assert missing.returncode == 2 and "cannot read the patch" in missing.stderr


def test_profiles_take_values_from_the_environment_only_and_a_job_uses_one(
    server: str, fake_github: FakeGitHub
) -> None:
    created = kb(server, "profiles", "create", "widgets", "--env", "GITHUB_TOKEN", GITHUB_TOKEN=GITHUB_TOKEN)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("widgets  GITHUB_TOKEN ")
    rotated = kb(
        server,
        "profiles",
        "rotate",
        "widgets",
        "--env",
        "GITHUB_TOKEN",
        "--env",
        "FAKE_KILO_MODE",
        GITHUB_TOKEN=GITHUB_TOKEN,
        FAKE_KILO_MODE="write",
    )
    assert rotated.returncode == 0 and "FAKE_KILO_MODE GITHUB_TOKEN" in rotated.stdout
    listed = kb(server, "profiles", "list")
    assert listed.stdout.startswith("widgets  ") and GITHUB_TOKEN not in listed.stdout + created.stdout
    as_json = kb(server, "profiles", "list", "--json")
    (profile,) = json.loads(as_json.stdout)
    assert profile["name"] == "widgets" and profile["variables"] == ["FAKE_KILO_MODE", "GITHUB_TOKEN"]
    assert GITHUB_TOKEN not in as_json.stdout
    again = kb(server, "profiles", "rotate", "widgets", "--env", "GITHUB_TOKEN", "--json", GITHUB_TOKEN=GITHUB_TOKEN)
    assert json.loads(again.stdout)["variables"] == ["GITHUB_TOKEN"] and GITHUB_TOKEN not in again.stdout
    kb(
        server,
        "profiles",
        "rotate",
        "widgets",
        "--env",
        "GITHUB_TOKEN",
        "--env",
        "FAKE_KILO_MODE",
        GITHUB_TOKEN=GITHUB_TOKEN,
        FAKE_KILO_MODE="write",
    )
    unset = kb(server, "profiles", "create", "other", "--env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 2 and "NOT_SET_ANYWHERE" in unset.stderr
    # a job on the profile alone: the token (for the push) and the mode (for the agent) come from it
    repo = fake_github.repo_url("acme", "widgets")
    done = kb(
        server,
        "jobs",
        "submit",
        "--repo",
        repo,
        "--agent",
        "apply-patch-and-pr",
        "--prompt",
        "change",
        "--profile",
        "widgets",
        "--follow",
    )
    assert done.returncode == 0, done.stderr
    assert fake_github.pulls and GITHUB_TOKEN not in done.stdout + done.stderr
    assert kb(server, "profiles", "delete", "widgets").stdout == "widgets deleted\n"
    missing = kb(server, "profiles", "delete", "widgets")
    assert missing.returncode == REFUSED and "HTTP 404" in missing.stderr
