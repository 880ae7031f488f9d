"""Agent jobs end to end on the local queue: real Redis, real git (a fake GitHub serving real bare
repositories over HTTP), the server's in-process bullmq worker, the runner in its own process, and the
stand-in CLI for process control (the real CLI is in tests/e2e/test_kilo_cli.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, pid_alive, run_body, wait_job
from tests.support import number

pytestmark = pytest.mark.slow


@pytest.fixture
def jobs_client(
    serve: Callable[..., str], job_settings: Callable[..., Settings], http_client: Callable[..., httpx.Client]
) -> httpx.Client:
    return http_client(base_url=serve(job_settings()), timeout=10)


def start(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def test_pull_request_opened_with_token_kept_out_of_urls(
    jobs_client: httpx.Client, fake_github: FakeGitHub, redis_client: redis.Redis, prefix: str
) -> None:
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "write"},
        ),
    )
    job = wait_job(jobs_client, job_id)
    assert job["status"] == "succeeded", job
    result = job["result"]
    branch = f"kilo/{job_id}"
    assert result["branch"] == branch and result["filesChanged"] == ["CHANGE.md"]
    assert result["diffStat"] == {"files": 1, "insertions": 1, "deletions": 0}
    assert result["prUrl"] == f"{fake_github.url}/acme/widgets/pull/1"
    pull = fake_github.pulls[0]
    assert (pull["head"], pull["base"]) == (branch, "main")
    bare = fake_github.root / "acme" / "widgets.git"
    assert git("-C", str(bare), "show", f"{branch}:CHANGE.md") == "a change\n"
    # git authenticated (Basic, through askpass); the token never appeared in a URL
    assert any(r["auth"] for r in fake_github.git_requests)
    assert all(GITHUB_TOKEN not in r["path"] for r in fake_github.git_requests)
    # artifacts, served back by the API
    diff = jobs_client.get(job["artifacts"]["diff.patch"]["url"].replace(str(jobs_client.base_url), ""))
    assert diff.status_code == 200 and "+a change" in diff.text
    assert set(job["artifacts"]) == {"log.jsonl", "diff.patch", "result.json"}
    # the log, replayed after the end, ends with the final status
    events = log_events(jobs_client, job_id)
    assert events[-1][0] == "end" and '"succeeded"' in events[-1][1]
    assert any("pull request" in data for kind, data in events if kind == "log")
    # secrets deleted when the job ended; counters updated
    assert not redis_client.exists(f"{prefix}job:{job_id}:env")
    assert jobs_client.get("/api/kilo/stats").json()["agentRuns"]["succeeded"] == 1


def test_dry_run_keeps_the_diff_and_pushes_nothing(jobs_client: httpx.Client, fake_github: FakeGitHub) -> None:
    job_id = start(
        jobs_client,
        run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN}),
    )
    job = wait_job(jobs_client, job_id)
    assert job["status"] == "succeeded"
    assert job["result"]["prUrl"] is None and job["result"]["branch"] is None
    assert fake_github.pulls == []
    assert "kilo/" not in git("-C", str(fake_github.root / "acme" / "widgets.git"), "branch", "-a")
    assert job["artifacts"]["diff.patch"]["bytes"] > 0


def test_agent_failure_is_failed_with_its_reason(jobs_client: httpx.Client, fake_github: FakeGitHub) -> None:
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "fail"}
        ),
    )
    job = wait_job(jobs_client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "agent_failed")
    assert "model refused" in job["error"]
    assert "log.jsonl" in job["artifacts"]


def test_clone_with_a_wrong_token_fails_without_echoing_it(jobs_client: httpx.Client, fake_github: FakeGitHub) -> None:
    wrong = "ghp_wrong_token_abcdef123456"
    job_id = start(jobs_client, run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": wrong}))
    job = wait_job(jobs_client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "clone_failed")
    assert wrong not in str(job)


def test_pull_request_refused_keeps_the_pushed_branch(jobs_client: httpx.Client, fake_github: FakeGitHub) -> None:
    fake_github.pr_status = 422
    job_id = start(
        jobs_client, run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN})
    )
    job = wait_job(jobs_client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "pr_failed")
    assert f"kilo/{job_id}" in job["error"] and "422" in job["error"]


def test_timeout_kills_the_whole_process_group(
    jobs_client: httpx.Client, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            timeoutMs=4_000,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "sleep", "FAKE_KILO_PIDS": str(pids)},
        ),
    )
    job = wait_job(jobs_client, job_id, timeout=30)
    assert (job["status"], job["reason"]) == ("timed_out", "timeout")
    agent, child = map(int, pids.read_text().split())
    assert not pid_alive(agent) and not pid_alive(child)


def test_cancel_while_running_stops_the_agent_within_seconds(
    jobs_client: httpx.Client, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "sleep", "FAKE_KILO_PIDS": str(pids)},
        ),
    )
    wait_job(jobs_client, job_id, ("running",), phase="agent")
    deadline = time.monotonic() + 30
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    response = jobs_client.delete(f"/api/kilo/job/{job_id}")
    assert response.status_code == 202 and response.json()["cancelRequested"] is True
    asked = time.monotonic()
    job = wait_job(jobs_client, job_id, timeout=15)
    assert (job["status"], job["reason"]) == ("cancelled", "cancelled_by_user")
    assert time.monotonic() - asked < 10
    agent, child = map(int, pids.read_text().split())
    assert not pid_alive(agent) and not pid_alive(child)
    assert jobs_client.delete(f"/api/kilo/job/{job_id}").json()["status"] == "cancelled"  # idempotent


def test_cancel_while_queued_is_immediate(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings(jobs_concurrency=0)), timeout=10)
    job_id = start(client, run_body(fake_github.repo_url("acme", "widgets")))
    assert redis_client.exists(f"{prefix}agent-jobs:{job_id}")  # bullmq's entry for it
    response = client.delete(f"/api/kilo/job/{job_id}")
    assert not redis_client.exists(f"{prefix}agent-jobs:{job_id}")  # withdrawn from the queue
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["reason"]) == ("cancelled", "cancelled_by_user")
    stats = client.get("/api/kilo/stats").json()["agentRuns"]
    assert (stats["queued"], stats["cancelled"]) == (0, 1)


def test_huge_output_is_capped_not_buffered(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings(job_log_max_bytes=1_000_000, job_log_max_lines=100)), timeout=10)
    job_id = start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "huge", "FAKE_KILO_HUGE_MB": "20"},
        ),
    )
    job = wait_job(client, job_id, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["result"]["filesChanged"] == ["CHANGE.md"]
    assert job["artifacts"]["log.jsonl"]["bytes"] <= 1_100_000
    assert redis_client.xlen(f"{prefix}job:{job_id}:log") < 1_000


def test_budget_stops_the_agent_at_the_call_that_would_pass_it_and_keeps_the_work(
    jobs_client: httpx.Client, fake_github: FakeGitHub, fake: FakeGatewayThread
) -> None:
    # Each model call costs $0.05 upstream; admission reserves ~$0.06 (the prompt and 4096 output tokens at
    # the model's list price), so the 4th call would pass the $0.20 cap: refused with 402 before it is made.
    fake.script([{"kind": "ok", "cost": 0.05}] * 10)
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            maxCostUsd=0.2,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "steps", "FAKE_KILO_STEP_COST": "0"},
        ),
    )
    job = wait_job(jobs_client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "budget_exceeded"), job
    assert job["result"]["costUsd"] == pytest.approx(0.15)  # what the bridge metered, under the cap
    assert job["result"]["filesChanged"] == ["step-0.txt", "step-1.txt", "step-2.txt"]
    assert len([r for r in fake.requests if r["path"].endswith("/chat/completions")]) == 3
    assert fake_github.pulls == []


def test_a_forged_bill_changes_nothing_the_bridge_is_the_meter(
    jobs_client: httpx.Client, fake_github: FakeGitHub, fake: FakeGatewayThread
) -> None:
    # The agent's stdout claims each step cost -$1000 (it could print anything there); the job costs what
    # its model calls were metered for, and its cap still holds.
    fake.script([{"kind": "ok", "cost": 0.01}] * 3)
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            maxCostUsd=0.5,
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "steps",
                "FAKE_KILO_STEPS": "3",
                "FAKE_KILO_STEP_COST": "-1000",
            },
        ),
    )
    job = wait_job(jobs_client, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["costUsd"] == pytest.approx(0.03)


def test_a_cost_cap_on_an_unpriced_model_is_refused_not_ignored(
    jobs_client: httpx.Client, fake_github: FakeGitHub
) -> None:
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            maxCostUsd=1.0,
            model="vendor/not-in-price-list",
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    )
    job = wait_job(jobs_client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "budget_unpriced"), job
    assert "not started" in job["error"] and fake_github.pulls == []


def test_logs_follow_a_running_job_live_and_end_with_it(jobs_client: httpx.Client, fake_github: FakeGitHub) -> None:
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "steps",
                "FAKE_KILO_STEPS": "10",
                "FAKE_KILO_STEP_COST": "0",
            },
        ),
    )
    wait_job(jobs_client, job_id, ("running",), phase="agent", timeout=30)
    seen_while_running: list[str] = []
    kind: str | None = None
    events: list[tuple[str | None, str]] = []
    with jobs_client.stream("GET", f"/api/kilo/job/{job_id}/logs", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, line[6:]))
                if kind == "log" and "step 9" not in line and not seen_while_running:
                    # Read while the agent still has steps to go: the stream is live, not a replay.
                    seen_while_running.append(jobs_client.get(f"/api/kilo/job/{job_id}").json()["status"])
    assert seen_while_running == ["running"]
    assert events[-1][0] == "end" and '"succeeded"' in events[-1][1]
    steps = [data for k, data in events if k == "log" and "done (tool-calls" in data]
    assert len(steps) == 10  # every step's line came through, live lines included


def test_a_budgeted_key_pays_for_its_agent_jobs(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    prefix: str,
    fake: FakeGatewayThread,
    http_client: Callable[..., httpx.Client],
) -> None:
    from kilo_bridge.keys.store import digest

    settings = job_settings(auth_required=True)
    key = key_factory("ci", budget_usd=1.0)
    client = http_client(base_url=serve(settings), headers={"x-api-key": key}, timeout=10)
    repo = fake_github.repo_url("acme", "widgets")
    env = {
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "FAKE_KILO_MODE": "steps",
        "FAKE_KILO_STEPS": "3",
        "FAKE_KILO_STEP_COST": "0.1",
    }
    fake.script([{"kind": "ok", "cost": 0.1}] * 3)  # what its three model calls cost upstream
    too_dear = client.post("/api/kilo/run-agent", json=run_body(repo, dryRun=True, maxCostUsd=2.0, profileEnv=env))
    assert too_dear.status_code == 402 and too_dear.json()["error"]["code"] == "budget_exceeded"
    # No maxCostUsd: the job reserves JOB_DEFAULT_MAX_COST_USD (1.0, the whole budget here)…
    job_id = start(client, run_body(repo, dryRun=True, profileEnv=env))
    record = f"{prefix}apikey:{digest(key)}"
    second = client.post("/api/kilo/run-agent", json=run_body(repo, dryRun=True, profileEnv=env))
    assert second.status_code == 402  # …so nothing else fits while it runs
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["costUsd"] == pytest.approx(0.3)
    # …and is settled to what its agent's model calls were metered for.
    spend, reserved = (number(v) for v in redis_client.hmget(record, "spend_nusd", "reserved_nusd"))
    assert (spend, reserved) == (300_000_000, 0)
    assert (
        client.post("/api/kilo/run-agent", json=run_body(repo, dryRun=True, maxCostUsd=0.7, profileEnv=env)).status_code
        == 202
    )


def _events_with_ids(
    client: httpx.Client, job_id: str, headers: dict[str, str] | None = None
) -> list[tuple[str | None, str | None, str]]:
    """(id, event, data) of each event of the job's log stream."""
    out: list[tuple[str | None, str | None, str]] = []
    kind: str | None = None
    event_id: str | None = None
    with client.stream("GET", f"/api/kilo/job/{job_id}/logs", headers=headers or {}) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out.append((event_id, kind, line[6:]))
                event_id = None
    return out


def test_a_reconnecting_log_reader_resumes_after_its_last_event_id(
    jobs_client: httpx.Client, fake_github: FakeGitHub
) -> None:
    job_id = start(
        jobs_client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "steps",
                "FAKE_KILO_STEPS": "4",
                "FAKE_KILO_STEP_COST": "0",
            },
        ),
    )
    wait_job(jobs_client, job_id)
    everything = _events_with_ids(jobs_client, job_id)
    logs = [e for e in everything if e[1] == "log"]
    assert len(logs) > 5 and all(e[0] for e in logs)  # every log line carries its id
    assert everything[0][1] == "status" and everything[-1][:2] == ("end", "end")
    last_seen = logs[2][0]
    assert last_seen is not None
    resumed = _events_with_ids(jobs_client, job_id, {"Last-Event-ID": last_seen})
    assert resumed == everything[:1] + everything[4:]  # the status, then exactly what came after, nothing twice
    # Garbage is no resume point: the whole log again.
    assert _events_with_ids(jobs_client, job_id, {"Last-Event-ID": "9-9; DROP"}) == everything
